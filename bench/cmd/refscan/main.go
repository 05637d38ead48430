// Command refscan measures the reference client's method of scanning, one
// package at a time on one thread: for each corpus distribution in turn it
// writes the archive to a temporary directory on disk, extracts it to disk,
// walks the extracted files, reads each one and scans it with a single
// go-yara scanner (ScanMem), summing the matches. It prints one JSON object
// with the totals and the elapsed time.
//
//	refscan [-rules bench/rules] [-corpus bench/corpus] [-tmp DIR] [-big]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hillu/go-yara/v4"

	"github.com/dragonfly-fleet/fleet/bench/internal/dist"
	"github.com/dragonfly-fleet/fleet/rules"
)

// config is one refscan run.
type config struct {
	// Rules is a directory of *.yara files, joined with "\n" in name order and
	// compiled once as one rule set (as the API client does). Default bench/rules.
	Rules string
	// Corpus is the corpus directory with manifest.json. Default bench/corpus.
	Corpus string
	// Tmp is the parent of the per-distribution scratch directories; it
	// should be on disk, not tmpfs, to match the reference client. Default
	// the system temp dir.
	Tmp string
	// Big scans the big targets (largest real wheel, mega wheel) instead of
	// the main corpus. Default false.
	Big bool
	// Timeout bounds YARA time per file, like the API doc's scan-timeout
	// limit. Default 10s.
	Timeout time.Duration
}

// result is what refscan prints.
type result struct {
	Distributions int            `json:"distributions"`
	Files         int            `json:"files"`
	Bytes         int64          `json:"bytes"`
	Matches       int            `json:"matches"`
	Seconds       float64        `json:"seconds"`
	ScanSeconds   float64        `json:"scan_seconds"`
	MBPerSecond   float64        `json:"mb_per_s"`
	RuleFiles     map[string]int `json:"rule_files"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cfg := config{}
	flag.StringVar(&cfg.Rules, "rules", "bench/rules", "directory of *.yara rule files")
	flag.StringVar(&cfg.Corpus, "corpus", "bench/corpus", "corpus directory (with manifest.json)")
	flag.StringVar(&cfg.Tmp, "tmp", os.TempDir(), "scratch parent directory (on disk)")
	flag.BoolVar(&cfg.Big, "big", false, "scan the big targets instead of the main corpus")
	flag.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "YARA time limit per file")
	flag.Parse()
	err := run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "refscan:", err)
		os.Exit(1)
	}
}

// compileDir compiles the rule files of dir (*.yara and *.yar) as one
// source, as the clients do (rules.Compile: go-yara v4.2.4's own compiler
// may panic when the garbage collector runs during a compile; see
// rules/compile.go).
func compileDir(dir string) (*yara.Rules, error) {
	set, err := rules.Load(dir)
	if err != nil {
		return nil, err
	}
	c, err := rules.Compile(set)
	if err != nil {
		return nil, err
	}
	return c.Yara(), nil
}

func run(ctx context.Context, cfg config, w io.Writer) error {
	m, err := dist.ReadManifest(cfg.Corpus)
	if err != nil {
		return err
	}
	files := m.Files(cfg.Big)
	yr, err := compileDir(cfg.Rules)
	if err != nil {
		return err
	}
	defer yr.Destroy()
	sc, err := yara.NewScanner(yr)
	if err != nil {
		return fmt.Errorf("yara scanner: %w", err)
	}
	defer sc.Destroy()
	sc.SetTimeout(rules.Timeout(cfg.Timeout))

	res := result{RuleFiles: map[string]int{}}
	var scanTime time.Duration
	start := time.Now()
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, err := scanOne(sc, filepath.Join(cfg.Corpus, filepath.FromSlash(f)), cfg.Tmp, &res)
		scanTime += d
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		res.Distributions++
	}
	elapsed := time.Since(start)
	res.Seconds = elapsed.Seconds()
	res.ScanSeconds = scanTime.Seconds()
	res.MBPerSecond = float64(res.Bytes) / 1e6 / res.Seconds
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// scanOne does one distribution the reference way and returns the time
// spent inside YARA.
func scanOne(sc *yara.Scanner, archive, tmp string, res *result) (time.Duration, error) {
	dir, err := os.MkdirTemp(tmp, "refscan-")
	if err != nil {
		return 0, fmt.Errorf("scratch dir: %w", err)
	}
	defer os.RemoveAll(dir)
	local := filepath.Join(dir, filepath.Base(archive))
	if err := dist.CopyFile(archive, local); err != nil {
		return 0, err
	}
	root := filepath.Join(dir, "x")
	if _, err := dist.Extract(local, root); err != nil {
		return 0, err
	}
	var scanTime time.Duration
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		var mr yara.MatchRules
		t := time.Now()
		err = sc.SetCallback(&mr).ScanMem(data)
		scanTime += time.Since(t)
		if err != nil {
			return fmt.Errorf("scan %s: %w", p, err)
		}
		res.Files++
		res.Bytes += int64(len(data))
		res.Matches += len(mr)
		for _, r := range mr {
			res.RuleFiles[r.Rule]++
		}
		return nil
	})
	return scanTime, err
}
