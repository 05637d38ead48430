package rules

import (
	"slices"
	"strings"

	"github.com/dragonfly-fleet/fleet/score"
)

// Rules returns the scoring metadata of every rule, sorted by name.
func (c *Compiled) Rules() []score.Rule {
	out := make([]score.Rule, 0, len(c.meta))
	for _, r := range c.meta {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b score.Rule) int { return strings.Compare(a.Name, b.Name) })
	return out
}
