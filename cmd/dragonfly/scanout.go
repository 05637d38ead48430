package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/version"
)

// jsonResult is one line of `dragonfly scan --format json`.
type jsonResult struct {
	Target            string     `json:"target"`
	Score             int64      `json:"score"`
	RulesMatched      []string   `json:"rules_matched"`
	MostMaliciousFile *string    `json:"most_malicious_file"`
	Files             []jsonFile `json:"files"`
	// FilesScanned and BytesScanned count every regular file handed to YARA
	// and its bytes (expanded), matched or not.
	FilesScanned int    `json:"files_scanned"`
	BytesScanned int64  `json:"bytes_scanned"`
	Error        string `json:"error,omitempty"`
	// A pypi: target: the release's inspector link (null when nothing
	// matched) and its distributions with their scores.
	InspectorURL  *string       `json:"inspector_url,omitempty"`
	Distributions *[]distResult `json:"distributions,omitempty"`
}

type jsonFile struct {
	Path  string   `json:"path"`
	Score int64    `json:"score"`
	Rules []string `json:"rules"`
}

func toJSON(r scanResult) jsonResult {
	out := jsonResult{Target: r.target, RulesMatched: []string{}, Files: []jsonFile{}}
	if r.release != nil {
		dists := r.release.dists
		if dists == nil {
			dists = []distResult{}
		}
		out.Distributions = &dists
		if r.release.inspectorURL != "" {
			u := r.release.inspectorURL
			out.InspectorURL = &u
		}
	}
	if r.err != nil {
		out.Error = oneLine(r.err)
		return out
	}
	out.Score = r.res.Score
	out.FilesScanned = r.res.Stats.Files
	out.BytesScanned = r.res.Stats.Expanded
	out.RulesMatched = ruleNames(r.res.Rules)
	out.MostMaliciousFile = topFile(r.res.Distribution)
	for _, f := range r.res.Files {
		out.Files = append(out.Files, jsonFile{Path: f.Path, Score: f.Score, Rules: ruleNames(f.Rules)})
	}
	return out
}

func writeJSON(w io.Writer, results []scanResult) error {
	enc := json.NewEncoder(w)
	for _, r := range results {
		if err := enc.Encode(toJSON(r)); err != nil {
			return err
		}
	}
	return nil
}

func writeTable(w io.Writer, results []scanResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tSCORE\tRULES\tMOST MALICIOUS FILE")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t-\tERROR\t%s\n", r.target, oneLine(r.err))
			continue
		}
		rs := strings.Join(ruleNames(r.res.Rules), ",")
		if rs == "" {
			rs = "-"
		}
		top := r.res.TopFile
		if top == "" {
			top = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.target, r.res.Score, rs, top)
	}
	return tw.Flush()
}

// SARIF 2.1.0, the subset code-scanning dashboards read.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool        sarifTool         `json:"tool"`
	Results     []sarifResult     `json:"results"`
	Invocations []sarifInvocation `json:"invocations"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID               string         `json:"id"`
	ShortDescription sarifMessage   `json:"shortDescription"`
	Properties       map[string]any `json:"properties,omitempty"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID     string          `json:"ruleId"`
	Level      string          `json:"level"`
	Message    sarifMessage    `json:"message"`
	Locations  []sarifLocation `json:"locations"`
	Properties map[string]any  `json:"properties,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifInvocation struct {
	ExecutionSuccessful        bool                `json:"executionSuccessful"`
	ToolExecutionNotifications []sarifNotification `json:"toolExecutionNotifications,omitempty"`
}

type sarifNotification struct {
	Level     string          `json:"level"`
	Message   sarifMessage    `json:"message"`
	Locations []sarifLocation `json:"locations,omitempty"`
}

// sarifLevel maps a rule weight to a SARIF level.
func sarifLevel(weight int64) string {
	switch {
	case weight >= 5:
		return "error"
	case weight > 0:
		return "warning"
	default:
		return "note"
	}
}

func writeSARIF(w io.Writer, rs *rules.Compiled, results []scanResult) error {
	used := map[string]bool{}
	run := sarifRun{Results: []sarifResult{}, Invocations: []sarifInvocation{{ExecutionSuccessful: true}}}
	for _, r := range results {
		if r.err != nil {
			inv := &run.Invocations[0]
			inv.ExecutionSuccessful = false
			inv.ToolExecutionNotifications = append(inv.ToolExecutionNotifications, sarifNotification{
				Level: "error", Message: sarifMessage{Text: oneLine(r.err)},
				Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: r.target}}}},
			})
			continue
		}
		for _, f := range r.res.Files {
			for _, h := range f.Rules {
				used[h.Name] = true
				run.Results = append(run.Results, sarifResult{
					RuleID:     h.Name,
					Level:      sarifLevel(h.Weight),
					Message:    sarifMessage{Text: fmt.Sprintf("YARA rule %s (weight %d) matched %s in %s", h.Name, h.Weight, f.Path, r.target)},
					Locations:  []sarifLocation{{PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: sarifURI(r.target, f.Path)}}}},
					Properties: map[string]any{"target": r.target, "file": f.Path, "weight": h.Weight, "distributionScore": r.res.Score},
				})
			}
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	run.Tool.Driver = sarifDriver{Name: "dragonfly", Version: version.String(), InformationURI: "https://github.com/dragonfly-fleet/fleet", Rules: []sarifRule{}}
	for _, n := range names {
		rule, _ := rs.Rule(n)
		run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRule{
			ID: n, ShortDescription: sarifMessage{Text: "YARA rule " + n},
			Properties: map[string]any{"weight": rule.Weight, "filetype": strings.Join(rule.Filetypes, " ")},
		})
	}
	log := sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{run}}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}

// sarifURI names a file inside a scanned target.
func sarifURI(target, file string) string {
	return strings.TrimSuffix(target, "/") + "/" + file
}
