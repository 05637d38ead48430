package scan

// Filetype pruning: a file is scanned only with the rules its path admits.
//
// A rule counts for a file only if its filetype metadata admits the file's
// path (score.Rule.Applies, the scorer's own test, on libyara's metadata), so
// the matches of the other rules never reach a result. Per path the engine
// computes the admitted set (the rules that are not private and whose
// filetype admits the path), and scans the file with a subset of the rule
// set compiled to hold exactly those rules plus everything they may depend
// on (rules.Set.Subset: the rules their conditions name and every global
// rule, transitively). libyara decides each string's matches and each
// rule's condition from the file's bytes, the rule's own strings and the
// rules it names, so every admitted rule matches in the subset exactly when
// it matches in the whole set; the subset compiles only if nothing it names
// is missing. A file that admits no rule is read and checked like any other
// but not scanned: nothing it could match would count.
//
// Subsets are compiled on first use, once (concurrent scanners wait for the
// one compilation), and kept per rule set up to Config.Subsets, least
// recently used first out. The plan of a rule set falls back to the whole
// set for every file it admits anything to (never to fewer rules) when its
// sources cannot be split or disagree with what libyara compiled, and a
// subset falls back to the whole set when it does not compile or holds other
// rules than the split says.
//
// Rule.Disable is not used: it changes the rule set shared by every scanner
// thread, and a disabled rule's strings are still searched (see
// BenchmarkDisableVsSubset).

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dragonfly-fleet/fleet/rules"
)

// contentModules are the modules whose values depend only on the scanned
// bytes: a rule set importing any other module (time, pe, elf, magic,
// cuckoo, dotnet, console, ...) is not cached by content. pe and elf read
// only the bytes too, but their results are large and version dependent;
// they are left out to be safe.
var contentModules = map[string]bool{"hash": true, "math": true}

// ruleBits is a set of rules of one rule set, by index.
type ruleBits []uint64

func newRuleBits(n int) ruleBits { return make(ruleBits, (n+63)/64) }

func (b ruleBits) set(i int)      { b[i/64] |= 1 << (i % 64) }
func (b ruleBits) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }

func (b ruleBits) empty() bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}

// subsetOf reports whether every rule of b is in o.
func (b ruleBits) subsetOf(o ruleBits) bool {
	for i, w := range b {
		if w&^o[i] != 0 {
			return false
		}
	}
	return true
}

func (b ruleBits) or(o ruleBits) ruleBits {
	out := slices.Clone(b)
	for i, w := range o {
		out[i] |= w
	}
	return out
}

// key is b as a map key.
func (b ruleBits) key() string {
	buf := make([]byte, 8*len(b))
	for i, w := range b {
		binary.LittleEndian.PutUint64(buf[8*i:], w)
	}
	return string(buf)
}

// target is what a file is scanned with: a compiled rule set (the whole set
// or a subset) or nothing.
type target struct {
	plan *plan
	// admitted is the admitted set the target was made for; nil for the
	// whole set of an exhaustive or unsplittable plan.
	admitted ruleBits
	key      string

	once sync.Once
	// Set by compile: the rules to scan with (nil: nothing to scan), the
	// rules they hold (every admitted rule's result in a scan with them is
	// the whole set's), and the cache identity of those rules.
	rules *rules.Compiled
	holds ruleBits
	id    [32]byte
	// subset is true for a compiled subset (not the whole set).
	subset bool
}

// plan is how one compiled rule set is pruned.
type plan struct {
	full   *rules.Compiled
	source rules.Set
	n      int
	names  []string
	index  map[string]int
	digest [32]byte // of the sources: identifies the exact rules
	// split is false when the sources could not be split (every admitted
	// set is scanned with the whole set); skip is false for an exhaustive
	// engine (every file is scanned with the whole set).
	split, skip bool
	reason      string
	// cacheable: the set imports no module but content-only ones.
	cacheable bool
	deps      [][]int // per rule, the rules it may depend on (globals included)
	globals   []int
	// always holds the reported rules without a filetype or with an empty
	// entry; bySuffix the reported rules listing each distinct non-empty
	// entry, suffixAt its index by the entry and suffixLens the entries'
	// distinct lengths, ascending: a path is looked up once per length
	// (a set may list millions of distinct entries; one look at each took
	// 60 ms per file unpacked, outside libyara's scan timeout).
	always     ruleBits
	reported   ruleBits
	bySuffix   [][]int
	suffixAt   map[string]int
	suffixLens []int

	fullTarget *target
	noneTarget *target

	maxTargets int
	onSubset   func(time.Duration, error)
	mu         sync.Mutex
	targets    map[string]*list.Element // of *target, most recent first
	lru        list.List
}

// newPlan reads the rules of rs. exhaustive: every file with every rule.
func newPlan(rs *rules.Compiled, exhaustive bool, maxTargets int, onSubset func(time.Duration, error)) *plan {
	p := &plan{full: rs, source: rs.Source(), index: map[string]int{}, maxTargets: maxTargets, onSubset: onSubset, targets: map[string]*list.Element{}}
	h := sha256.New()
	fmt.Fprintf(h, "fleet rules\x00")
	for _, st := range p.source.Stems() {
		fmt.Fprintf(h, "%d:%s\x00%d:%s\x00", len(st), st, len(p.source.Sources[st]), p.source.Sources[st])
	}
	h.Sum(p.digest[:0])
	yr := rs.Yara().GetRules()
	p.n = len(yr)
	for i, r := range yr {
		p.names = append(p.names, r.Identifier())
		p.index[r.Identifier()] = i
	}
	p.always, p.reported = newRuleBits(p.n), newRuleBits(p.n)
	p.fullTarget = &target{plan: p, key: "all"}
	p.noneTarget = &target{plan: p, admitted: newRuleBits(p.n), key: "none"}
	// An exhaustive plan scans every file with every rule (skip is false)
	// but reads the filetypes and dependencies all the same: they say
	// which rules count for a file (capCounts).
	p.skip = !exhaustive
	p.suffixAt = map[string]int{}
	var lens []int
	for i, r := range yr {
		if r.IsPrivate() {
			continue
		}
		p.reported.set(i)
		m, _ := rs.Rule(r.Identifier())
		if len(m.Filetypes) == 0 || slices.Contains(m.Filetypes, "") {
			p.always.set(i)
			continue
		}
		for _, s := range m.Filetypes {
			j, ok := p.suffixAt[s]
			if !ok {
				j = len(p.bySuffix)
				p.suffixAt[s] = j
				p.bySuffix = append(p.bySuffix, nil)
				lens = append(lens, len(s))
			}
			// Rules come in order: a rule listing s twice is the last.
			if n := len(p.bySuffix[j]); n == 0 || p.bySuffix[j][n-1] != i {
				p.bySuffix[j] = append(p.bySuffix[j], i)
			}
		}
	}
	slices.Sort(lens)
	p.suffixLens = slices.Compact(lens)
	p.split, p.reason = p.readSources(rs)
	if exhaustive {
		p.reason = "exhaustive"
	}
	return p
}

// capCounts reports whether the rules (indexes in t's rules) holding a
// string libyara stopped keeping matches of at its cap can change the
// result of the file at path scanned with t: one of them counts for the
// file or is one such a rule depends on (plan.capCounts). A subset holds
// only such rules; the whole set also holds rules that never count there,
// and a capped string of one of them leaves the file's result exact, as a
// subset (or no scan, when path admits no rule) gives it. Without the split
// the answer is yes.
func (t *target) capCounts(path string, capped []int) bool {
	p := t.plan
	if t.subset || !p.split {
		return true
	}
	adm := t.admitted
	if adm == nil {
		// The whole set: a pruning plan scans with it only what admits
		// every reported rule; an exhaustive one scans everything.
		adm = p.reported
		if !p.skip {
			adm = p.admit(path)
		}
	}
	return p.capCounts(adm, capped)
}

// capCounts reports whether a rule of capped (indexes in the whole set) is
// one of the admitted rules adm or one they depend on; no rule counts for
// a file that admits none.
func (p *plan) capCounts(adm ruleBits, capped []int) bool {
	if adm.empty() {
		return false
	}
	holds := p.closure(adm)
	for _, i := range capped {
		if holds.has(i) {
			return true
		}
	}
	return false
}

// readSources splits the sources and checks the split against libyara's
// rules: the same rules in the same order with the same modifiers.
func (p *plan) readSources(rs *rules.Compiled) (bool, string) {
	if len(p.source.Sources) == 0 {
		return false, "no sources"
	}
	infos, err := p.source.Rules()
	if err != nil {
		return false, err.Error()
	}
	yr := rs.Yara().GetRules()
	if len(infos) != len(yr) {
		return false, fmt.Sprintf("split %d rules, libyara %d", len(infos), len(yr))
	}
	p.deps = make([][]int, p.n)
	for i, in := range infos {
		if in.Name != yr[i].Identifier() || in.Private != yr[i].IsPrivate() || in.Global != yr[i].IsGlobal() {
			return false, fmt.Sprintf("rule %d: split %s, libyara %s", i, in.Name, yr[i].Identifier())
		}
		if in.Global {
			p.globals = append(p.globals, i)
		}
		for _, d := range in.Deps {
			p.deps[i] = append(p.deps[i], p.index[d])
		}
	}
	imports, err := p.source.Imports()
	if err != nil {
		return false, err.Error()
	}
	p.cacheable = true
	for _, m := range imports {
		if !contentModules[m] {
			p.cacheable = false
		}
	}
	return true, ""
}

// admit returns the reported rules whose filetype admits path.
func (p *plan) admit(path string) ruleBits {
	b := slices.Clone(p.always)
	for _, n := range p.suffixLens {
		if n > len(path) {
			break
		}
		if j, ok := p.suffixAt[path[len(path)-n:]]; ok {
			for _, i := range p.bySuffix[j] {
				b.set(i)
			}
		}
	}
	return b
}

// targetFor returns what a file at path is scanned with, and the rules its
// path admits.
func (p *plan) targetFor(path string) (*target, ruleBits) {
	if !p.skip {
		return p.fullTarget, nil
	}
	adm := p.admit(path)
	return p.targetOf(adm), adm
}

// targetOf returns the target for an admitted set.
func (p *plan) targetOf(adm ruleBits) *target {
	switch {
	case !p.skip:
		return p.fullTarget
	case adm.empty():
		return p.noneTarget
	case !p.split || slices.Equal(adm, p.reported):
		return p.fullTarget
	}
	k := adm.key()
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.targets[k]; ok {
		p.lru.MoveToFront(el)
		return el.Value.(*target)
	}
	t := &target{plan: p, admitted: adm, key: k}
	p.targets[k] = p.lru.PushFront(t)
	for p.lru.Len() > p.maxTargets {
		old := p.lru.Back()
		p.lru.Remove(old)
		delete(p.targets, old.Value.(*target).key)
	}
	return t
}

// closure returns adm with every rule its rules may depend on and every
// global rule.
func (p *plan) closure(adm ruleBits) ruleBits {
	out := slices.Clone(adm)
	stack := slices.Clone(p.globals)
	for i := range p.n {
		if adm.has(i) {
			stack = append(stack, i)
		}
	}
	for _, g := range p.globals {
		out.set(g)
	}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, d := range p.deps[i] {
			if !out.has(d) {
				out.set(d)
				stack = append(stack, d)
			}
		}
	}
	return out
}

// compile readies t (once; concurrent callers wait).
func (t *target) compile() {
	t.once.Do(func() {
		p := t.plan
		all := newRuleBits(p.n)
		for i := range p.n {
			all.set(i)
		}
		if t == p.noneTarget {
			t.holds = newRuleBits(p.n)
			return
		}
		useFull := func() {
			t.rules, t.holds = p.full, all
			t.id = sha256.Sum256(append(p.digest[:], "all"...))
		}
		if t == p.fullTarget {
			useFull()
			return
		}
		holds := p.closure(t.admitted)
		if slices.Equal(holds, all) {
			// What the admitted rules depend on is every rule: no
			// subset to compile (not a failure).
			useFull()
			return
		}
		var names []string
		for i := range p.n {
			if holds.has(i) {
				names = append(names, p.names[i])
			}
		}
		start := time.Now()
		c, err := t.compileSubset(names)
		trimCHeap()
		if p.onSubset != nil {
			p.onSubset(time.Since(start), err)
		}
		if err != nil {
			useFull()
			return
		}
		t.rules, t.holds, t.subset = c, holds, true
		t.id = sha256.Sum256(append(p.digest[:], holds.key()...))
	})
}

// compileSubset compiles the subset holding names and checks that libyara
// compiled exactly those rules.
func (t *target) compileSubset(names []string) (*rules.Compiled, error) {
	sub, err := t.plan.source.Subset(names)
	if err != nil {
		return nil, err
	}
	if sub.Hash == t.plan.source.Hash && len(sub.Sources) == len(t.plan.source.Sources) {
		return nil, fmt.Errorf("rule subset of %d rules: the split gave the whole set", len(names))
	}
	// Compact: a subset costs its own size, not the compiler's buffers
	// (about 8 MiB resident per compiled set).
	c, err := rules.Compile(sub)
	if err != nil {
		return nil, fmt.Errorf("rule subset of %d rules: %w", len(names), err)
	}
	var got []string
	for _, r := range c.Yara().GetRules() {
		got = append(got, r.Identifier())
	}
	if !slices.Equal(got, names) {
		return nil, fmt.Errorf("rule subset holds %d rules, want %d", len(got), len(names))
	}
	return c, nil
}

// planCache keeps the plans of the last few rule sets an engine scanned with.
type planCache struct {
	mu    sync.Mutex
	plans []*plan // most recent first
}

// maxPlans bounds the rule sets whose plans (and compiled subsets) an engine
// keeps: a worker scans with one rule set at a time, two around an update.
const maxPlans = 4

func (e *Engine) planFor(rs *rules.Compiled) *plan {
	c := &e.plans
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.plans {
		if p.full == rs {
			copy(c.plans[1:i+1], c.plans[:i])
			c.plans[0] = p
			return p
		}
	}
	p := newPlan(rs, e.cfg.Exhaustive, e.cfg.Subsets, e.onSubset)
	c.plans = append([]*plan{p}, c.plans...)
	if len(c.plans) > maxPlans {
		clear(c.plans[maxPlans:]) // (the backing array kept the plan)
		c.plans = c.plans[:maxPlans]
	}
	return p
}

// Forget drops what the engine keeps of rs, for a rule set no scan will
// use again (a worker's session evicted it, or ended): its plan (and the
// plan's compiled subsets), and the scanners of rs or its subsets that each
// scanner thread keeps, dropped by each thread before its next file. A scan
// with rs still running keeps what it uses until it ends; one started later
// makes them anew.
func (e *Engine) Forget(rs *rules.Compiled) {
	c := &e.plans
	c.mu.Lock()
	c.plans = slices.DeleteFunc(c.plans, func(p *plan) bool { return p.full == rs })
	c.mu.Unlock()
	e.forgets.Add(1)
}
