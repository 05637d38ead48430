// Command mkcorpus builds the benchmark corpus: it downloads the Debian
// python3-* packages pinned in bench/corpus.list (apt-get download, SHA256
// verified), and repacks the files each ships under
// /usr/lib/python3/dist-packages into a PyPI-like sdist (name-version.tar.gz)
// and wheel (name-version-py3-none-any.whl). The "mega" entries are merged
// into one synthesised wheel near the 128 MB download limit. Output is
// deterministic: the same list gives the same bytes.
//
//	mkcorpus [build] [-list bench/corpus.list] [-cache bench/cache] [-out bench/corpus]
//	mkcorpus resolve [-list ...]      print the list with missing SHA256s filled in (apt-cache)
//	mkcorpus extract -to DIR [-out bench/corpus] [-big]
//	mkcorpus stats [-out bench/corpus]  print the corpus totals and big targets as JSON
//	mkcorpus stream [-out bench/corpus] write the release stream to OUT/stream (see stream.go)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/dragonfly-fleet/fleet/bench/internal/dist"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkcorpus:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	cmd := "build"
	if len(args) > 0 && (args[0] == "build" || args[0] == "resolve" || args[0] == "extract" || args[0] == "stats" || args[0] == "stream") {
		cmd, args = args[0], args[1:]
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := config{Log: log}
	fs := flag.NewFlagSet("mkcorpus "+cmd, flag.ContinueOnError)
	fs.StringVar(&cfg.List, "list", "bench/corpus.list", "pinned package list")
	fs.StringVar(&cfg.Cache, "cache", "bench/cache", "directory of downloaded .deb files")
	fs.StringVar(&cfg.Out, "out", "bench/corpus", "corpus directory")
	fs.IntVar(&cfg.Jobs, "jobs", runtime.GOMAXPROCS(0), "packages repacked or extracted in parallel")
	noDownload := fs.Bool("no-download", false, "fail instead of running apt-get download for missing .debs")
	noMega := fs.Bool("no-mega", false, "skip the synthesised big wheel")
	fs.IntVar(&cfg.Only, "only", 0, "build only the first N main packages (0: all)")
	force := fs.Bool("force", false, "rebuild even if the manifest matches the list")
	to := fs.String("to", "", "extract: target directory")
	big := fs.Bool("big", false, "extract: the big targets instead of the main corpus")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.Download, cfg.Mega, cfg.Force = !*noDownload, !*noMega, *force
	switch cmd {
	case "resolve":
		return resolve(ctx, cfg, stdout)
	case "stats":
		return stats(cfg, stdout)
	case "stream":
		m, err := buildStream(ctx, cfg)
		if err != nil {
			return err
		}
		printTotals(stdout, "stream", m.Totals)
		return nil
	case "extract":
		if *to == "" {
			return errors.New("extract needs -to")
		}
		st, err := extractCorpus(ctx, cfg, *to, *big)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d %d\n", st.Files, st.Bytes)
		return nil
	}
	m, err := build(ctx, cfg)
	if err != nil {
		return err
	}
	printTotals(stdout, "corpus", m.Totals)
	if m.Big.Mega != nil {
		fmt.Fprintf(stdout, "mega wheel: %s, %d files, %.1f MB compressed, %.1f MB expanded\n",
			m.Big.Mega.File, m.Big.Mega.Files, float64(m.Big.Mega.Size)/1e6, float64(m.Big.Mega.Expanded)/1e6)
	}
	return nil
}

// printTotals prints a manifest's totals as "label: N distributions, ...".
func printTotals(w io.Writer, label string, t dist.Totals) {
	fmt.Fprintf(w, "%s: %d distributions, %d files, %.1f MB compressed, %.1f MB expanded\n",
		label, t.Distributions, t.Files, float64(t.Size)/1e6, float64(t.Expanded)/1e6)
}
