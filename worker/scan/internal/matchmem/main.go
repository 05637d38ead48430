// Command matchmem measures the peak resident memory of scans built to
// maximise libyara's matches, with and without the engine's match memory
// guard (limit.Limits.MatchMemory) and for two match data settings
// (scan.Config.MaxMatchData). Each case runs in a child process of its own,
// which reports the VmHWM of /proc/self/status before and after its scan:
// libyara allocates its matches in C, where the Go heap does not see them.
//
//	go run ./worker/scan/internal/matchmem -rules bench/rules
//
// It prints one line per case. The unguarded cases ("none") run without any
// memory bound, as the fleet did before the guard: with large -sizes one can
// need gigabytes (libyara's matches of a 2 MiB file took 690 MB), so run it
// on a machine that has them, or with small sizes.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

type params struct {
	Rules        string // a rules path, or "hostile"
	File         string // generator name
	Size         int
	MatchMemory  int64
	MaxMatchData int
}

type report struct {
	HWMBefore, HWMAfter int64 // KiB
	Took                time.Duration
	Verdict             string
}

func main() {
	child := flag.String("child", "", "run one case (JSON params) and print its report")
	rulesDir := flag.String("rules", "bench/rules", "the benchmark rule set")
	sizes := flag.String("sizes", "16,64", "file sizes in MiB")
	flag.Parse()
	if *child != "" {
		var p params
		if err := json.Unmarshal([]byte(*child), &p); err != nil {
			fail(err)
		}
		r, err := runCase(p)
		if err != nil {
			fail(err)
		}
		json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	set, err := rules.Load(*rulesDir)
	if err != nil {
		fail(err)
	}
	units := benchUnits(set)
	fmt.Printf("%-9s %-26s %5s %-10s %7s %9s %9s %9s  %s\n", "rules", "file", "MiB", "guard", "data", "base MiB", "peak MiB", "scan MiB", "verdict (time)")
	for _, ms := range strings.Split(*sizes, ",") {
		mib, err := strconv.Atoi(ms)
		if err != nil {
			fail(err)
		}
		type c struct {
			rules, file string
		}
		var cases []c
		for _, u := range units {
			cases = append(cases, c{*rulesDir, u})
		}
		cases = append(cases, c{"hostile", "A"})
		for _, cs := range cases {
			for _, mode := range []struct {
				name  string
				mm    int64
				data  int
				guard bool
			}{
				{"none", 1 << 62, 0, false},
				{"none", 1 << 62, 1, false},
				{"64 MiB", 0, 1, true},
				{"64 MiB", 0, 0, true},
			} {
				p := params{Rules: cs.rules, File: cs.file, Size: mib << 20, MatchMemory: mode.mm, MaxMatchData: mode.data}
				r, err := runChild(p)
				label := cs.rules
				if label != "hostile" {
					label = "bench"
				}
				data := "512"
				if mode.data == 1 {
					data = "1"
				}
				if err != nil {
					fmt.Printf("%-9s %-26s %5d %-10s %7s  error: %v\n", label, cs.file, mib, mode.name, data, err)
					continue
				}
				fmt.Printf("%-9s %-26s %5d %-10s %7s %9.0f %9.0f %9.0f  %s (%v)\n", label, cs.file, mib, mode.name, data,
					float64(r.HWMBefore)/1024, float64(r.HWMAfter)/1024, float64(r.HWMAfter-r.HWMBefore)/1024, r.Verdict, r.Took.Round(time.Millisecond))
			}
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "matchmem:", err)
	os.Exit(1)
}

func runChild(p params) (report, error) {
	b, _ := json.Marshal(p)
	var out, errb bytes.Buffer
	cmd := exec.Command(os.Args[0], "-child", string(b))
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return report{}, fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
	}
	var r report
	err := json.Unmarshal(out.Bytes(), &r)
	return r, err
}

// literal matches a YARA text string declaration.
var literal = regexp.MustCompile(`\$\w*\s*=\s*("(?:[^"\\]|\\.)*")`)

// benchUnits returns the file generators for the benchmark rules: units
// repeated to the file size, each built to make many strings match often.
func benchUnits(set rules.Set) []string {
	seen := map[string]int{}
	for _, src := range set.Sources {
		for _, m := range literal.FindAllStringSubmatch(src, -1) {
			if s, err := strconv.Unquote(m[1]); err == nil && s != "" {
				seen[s]++
			}
		}
	}
	var all strings.Builder
	for s := range seen {
		all.WriteString(s)
		all.WriteByte(' ')
	}
	os.WriteFile(os.TempDir()+"/matchmem-all-literals", []byte(all.String()), 0o644)
	return []string{
		"lit:exec(0x",                  // "exec(" in three rules, "exec", "0x"
		"lit:0x",                       // the shortest literal
		"lit:eval(exec(0xbc1q.exeUPX!", // many short literals in one unit
		"file:" + os.TempDir() + "/matchmem-all-literals", // every literal once per unit
		"blob", // the long base64 blob regex
		"hex",  // the hex blob regex
	}
}

// generate builds size bytes of the named file.
func generate(name string, size int) []byte {
	var unit []byte
	switch {
	case name == "A":
		unit = []byte(strings.Repeat("A", 255) + "\n")
	case name == "blob":
		unit = []byte(`"` + strings.Repeat("QUJD", 50) + `"`)
	case name == "hex":
		unit = []byte(`'` + strings.Repeat(`\x41`, 70) + `'`)
	case strings.HasPrefix(name, "lit:"):
		unit = []byte(strings.TrimPrefix(name, "lit:"))
	case strings.HasPrefix(name, "file:"):
		b, err := os.ReadFile(strings.TrimPrefix(name, "file:"))
		if err != nil {
			fail(err)
		}
		unit = b
	default:
		fail(fmt.Errorf("no generator %q", name))
	}
	b := bytes.Repeat(unit, size/len(unit)+1)
	return b[:size]
}

// hostile has 16 literals of As and two greedy regexes: on lines of 255
// As every literal matches at almost every offset, each regex at one in
// five.
func hostile() rules.Set {
	var b strings.Builder
	b.WriteString("rule hostile_literals { strings:")
	for i := range 16 {
		fmt.Fprintf(&b, " $a%d = %q", i, strings.Repeat("A", 4+i))
	}
	b.WriteString(" condition: any of them }\n")
	b.WriteString("rule hostile_regex { strings: $r1 = /[A-Za-z]{200,}/ $r2 = /A[A-Z]{100,}/ condition: #r1 > 10 or #r2 > 10 }\n")
	return rules.Set{Sources: map[string]string{"hostile": b.String()}}
}

func runCase(p params) (report, error) {
	var set rules.Set
	var err error
	if p.Rules == "hostile" {
		set = hostile()
	} else if set, err = rules.Load(p.Rules); err != nil {
		return report{}, err
	}
	rs, err := rules.Compile(set)
	if err != nil {
		return report{}, err
	}
	data := generate(p.File, p.Size)
	e := scan.New(scan.Config{Threads: 1, MaxMatchData: p.MaxMatchData,
		Limits: limit.Limits{ScanTimeout: 5 * time.Minute, File: 64 << 20, MatchMemory: p.MatchMemory}})
	defer e.Close()
	var r report
	if r.HWMBefore, err = hwm(); err != nil {
		return r, err
	}
	start := time.Now()
	res, err := e.Run(context.Background(), rs, func(ctx context.Context, _ archive.Alloc, emit archive.Emit, _ archive.Link) (archive.Stats, error) {
		// The buffer is the producer's own: no copy, no budget.
		return archive.Stats{Files: 1, Expanded: int64(len(data))}, emit(0, "pkg/"+p.File+".py", data)
	})
	r.Took = time.Since(start)
	var le *limit.Error
	switch {
	case errors.As(err, &le):
		r.Verdict = "limit " + string(le.Kind)
	case err != nil:
		r.Verdict = "error: " + err.Error()
	default:
		var names []string
		for _, h := range res.Rules {
			names = append(names, h.Name)
		}
		r.Verdict = fmt.Sprintf("%d rules %v", len(names), names)
	}
	r.HWMAfter, err = hwm()
	return r, err
}

// hwm returns the process's peak resident set size in KiB.
func hwm() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}
