package archive

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/dragonfly-fleet/fleet/worker/limit"
)

var errStop = errors.New("stop")

func TestWalkContext(t *testing.T) {
	data := gz(t, sdist(t))

	t.Run("cancelled before", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(errStop)
		allocs := 0
		_, err := Walk(ctx, data, "x", noLimits,
			func(context.Context, int) ([]byte, error) { allocs++; return nil, nil },
			func(int, string, []byte) error { return nil }, noLinks)
		if !errors.Is(err, errStop) || allocs != 0 {
			t.Errorf("error %v after %d allocs, want the cause and none", err, allocs)
		}
	})

	t.Run("cancelled between files", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			data []byte
		}{{"tar.gz", data}, {"zip", stdZip(t, sdistFiles...)}, {"tar", sdist(t)}} {
			ctx, cancel := context.WithCancelCause(context.Background())
			emitted := 0
			st, err := Walk(ctx, tc.data, "x", noLimits,
				func(_ context.Context, n int) ([]byte, error) { return make([]byte, n), nil },
				func(int, string, []byte) error { emitted++; cancel(errStop); return nil }, noLinks)
			if !errors.Is(err, errStop) || emitted != 1 || st.Files != 1 {
				t.Errorf("%s: error %v after %d emits (stats %+v), want the cause after 1", tc.name, err, emitted, st)
			}
		}
	})

	t.Run("cancelled while blocked in alloc", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		entered := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			_, err := Walk(ctx, data, "x", noLimits,
				func(ctx context.Context, n int) ([]byte, error) {
					close(entered)
					<-ctx.Done()
					return nil, context.Cause(ctx)
				},
				func(int, string, []byte) error { return errors.New("no buffer was handed out") }, noLinks)
			done <- err
		}()
		<-entered
		cancel(errStop)
		if err := <-done; !errors.Is(err, errStop) {
			t.Errorf("error %v, want the cause", err)
		}
	})

	t.Run("emit error stops the walk", func(t *testing.T) {
		allocs := 0
		_, err := Walk(context.Background(), data, "x", noLimits,
			func(_ context.Context, n int) ([]byte, error) { allocs++; return make([]byte, n), nil },
			func(int, string, []byte) error { return errStop }, noLinks)
		if err != errStop || allocs != 1 {
			t.Errorf("error %v after %d allocs, want errStop as is after 1", err, allocs)
		}
	})
}

// TestFailedReadHandsBufferBack checks the ownership rule: a buffer whose
// file could not be read still goes to emit, once, and is not counted.
func TestFailedReadHandsBufferBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		data func(t *testing.T) []byte
	}{
		{"truncated tar.gz", func(t *testing.T) []byte { b := gz(t, bigTar(t)); return b[:len(b)/2] }},
		{"truncated tar", func(t *testing.T) []byte { b := bigTar(t); return b[:len(b)/2] }},
		{"zip crc mismatch", func(t *testing.T) []byte {
			return buildZip(t, zipOpts{},
				zipEnt{Name: "pkg/a.py", Body: "a = 1\n", Method: methodDeflate},
				zipEnt{Name: "pkg/big.bin", Body: "x", Method: methodDeflate, CRC: ptr[uint32](1)})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := walk(t, tc.data(t), "x", noLimits)
			e := as[*Error](t, r.Err)
			if e.Path != "pkg/big.bin" {
				t.Errorf("error %v, want one about pkg/big.bin", r.Err)
			}
			if len(r.Files) != 1 || r.Files[0].Path != "pkg/a.py" || r.Stats.Files != 1 {
				t.Errorf("files %s, stats %+v; want only pkg/a.py counted", quoteFiles(r.Files), r.Stats)
			}
			if len(r.Failed) != 1 || r.Failed[0].Path != "pkg/big.bin" || r.Allocs != 2 || r.Emits != 2 {
				t.Errorf("failed %d (%s), allocs %d, emits %d; want the failed buffer handed back once",
					len(r.Failed), quoteFiles(r.Failed), r.Allocs, r.Emits)
			}
		})
	}
}

// TestConcurrentWalks walks the same inputs from several goroutines: Walk
// keeps no shared state.
func TestConcurrentWalks(t *testing.T) {
	inputs := map[string][]byte{
		"tar.gz": gz(t, sdist(t)),
		"tar.xz": xzc(t, sdist(t)),
		"zip":    stdZip(t, sdistFiles...),
		"gz":     gz(t, []byte(strings.Repeat("text ", 1000))),
	}
	want := map[string]result{}
	for name, data := range inputs {
		want[name] = walk(t, data, name, noLimits)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(inputs))
	for range 4 {
		for name, data := range inputs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var files []file
				var links []string
				st, err := Walk(context.Background(), data, name, limit.Limits{},
					func(_ context.Context, n int) ([]byte, error) { return make([]byte, n), nil },
					func(_ int, p string, b []byte) error { files = append(files, file{p, string(b)}); return nil },
					func(_ int, p string, _ int) error { links = append(links, p); return nil })
				if err != nil || st != want[name].Stats || !reflect.DeepEqual(files, want[name].Files) || len(links) != len(want[name].Links) {
					errs <- errors.New(name + ": concurrent walk differs")
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestFormatString(t *testing.T) {
	want := map[Format]string{Raw: "raw", Tar: "tar", TarGzip: "tar.gz", TarBzip2: "tar.bz2", TarXz: "tar.xz",
		Zip: "zip", Gzip: "gz", Bzip2: "bz2", Xz: "xz", Format(42): "format(42)"}
	for f, s := range want {
		if f.String() != s {
			t.Errorf("Format(%d).String() = %q, want %q", int(f), f.String(), s)
		}
	}
}
