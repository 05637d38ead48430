package archive

import (
	"archive/tar"
	"errors"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/worker/limit"
)

func TestWalkLimits(t *testing.T) {
	body := func(n int) string { return strings.Repeat("x", n) }
	dirs := func(t testing.TB, n int) []byte {
		var es []tarEntry
		for i := range n {
			es = append(es, tarEntry{Name: "d" + string(rune('a'+i)) + "/", Type: tar.TypeDir})
		}
		return makeTar(t, es...)
	}
	zipN := func(t testing.TB, o zipOpts, n int) []byte {
		var es []zipEnt
		for i := range n {
			es = append(es, zipEnt{Name: "f" + string(rune('a'+i)), Body: "x", Method: methodStore})
		}
		return buildZip(t, o, es...)
	}
	tests := []struct {
		name   string
		data   func(t *testing.T) []byte
		dist   string
		lim    limit.Limits
		want   *limit.Error // nil: no error
		files  int          // files emitted (and counted) before the error
		allocs int          // buffers taken in all
	}{
		{name: "tar entries over the limit", data: func(t *testing.T) []byte { return dirs(t, 5) },
			lim: limit.Limits{Entries: 3}, want: &limit.Error{Kind: limit.Entries, Max: 3}},
		{name: "tar entries at the limit", data: func(t *testing.T) []byte { return dirs(t, 3) },
			lim: limit.Limits{Entries: 3}},
		{name: "zip entries over the limit, from the end record", data: func(t *testing.T) []byte { return zipN(t, zipOpts{}, 5) },
			lim: limit.Limits{Entries: 3}, want: &limit.Error{Kind: limit.Entries, Max: 3}},
		{name: "zip entries over the limit, end record understates", data: func(t *testing.T) []byte {
			return zipN(t, zipOpts{Count: ptr[uint64](1)}, 5)
		}, lim: limit.Limits{Entries: 3}, want: &limit.Error{Kind: limit.Entries, Max: 3}},
		{name: "zip entries at the limit", data: func(t *testing.T) []byte { return zipN(t, zipOpts{}, 3) },
			lim: limit.Limits{Entries: 3}, files: 3, allocs: 3},
		{name: "tar file over the per-file limit", data: func(t *testing.T) []byte {
			return makeTar(t, reg("a.py", body(100)), reg("b.py", body(101)))
		}, lim: limit.Limits{File: 100}, want: &limit.Error{Kind: limit.File, Max: 100, Path: "b.py"}, files: 1, allocs: 1},
		{name: "tar.gz file over the per-file limit", data: func(t *testing.T) []byte {
			return gz(t, makeTar(t, reg("a.py", body(100)), reg("b.py", body(101))))
		}, lim: limit.Limits{File: 100}, want: &limit.Error{Kind: limit.File, Max: 100, Path: "b.py"}, files: 1, allocs: 1},
		{name: "zip file over the per-file limit", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{},
				zipEnt{Name: "a.py", Body: body(100), Method: methodDeflate},
				zipEnt{Name: "b.py", Body: body(101), Method: methodDeflate})
		}, lim: limit.Limits{File: 100}, want: &limit.Error{Kind: limit.File, Max: 100, Path: "b.py"}},
		{name: "tar expanded total over the limit", data: func(t *testing.T) []byte {
			return makeTar(t, reg("a", body(40)), tarEntry{Name: "d/", Type: tar.TypeDir}, reg("b", body(40)), reg("c", body(40)))
		}, lim: limit.Limits{Expanded: 100}, want: &limit.Error{Kind: limit.Expanded, Max: 100, Path: "c"}, files: 2, allocs: 2},
		{name: "tar expanded total at the limit", data: func(t *testing.T) []byte {
			return makeTar(t, reg("a", body(50)), reg("b", body(50)))
		}, lim: limit.Limits{Expanded: 100, File: 50, Entries: 2}, files: 2, allocs: 2},
		{name: "zip expanded total over the limit", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{},
				zipEnt{Name: "a", Body: body(40), Method: methodStore},
				zipEnt{Name: "d/"},
				zipEnt{Name: "b", Body: body(40), Method: methodDeflate},
				zipEnt{Name: "c", Body: body(40), Method: methodStore})
		}, lim: limit.Limits{Expanded: 100}, want: &limit.Error{Kind: limit.Expanded, Max: 100, Path: "c"}},
		// Declared sizes are checked before anything is inflated: one byte
		// over, the walk fails before the first file.
		{name: "zip expanded total one byte over the limit", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{},
				zipEnt{Name: "a", Body: body(50), Method: methodStore},
				zipEnt{Name: "b", Body: body(51), Method: methodDeflate})
		}, lim: limit.Limits{Expanded: 100}, want: &limit.Error{Kind: limit.Expanded, Max: 100, Path: "b"}},
		{name: "zip expanded total at the limit", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{},
				zipEnt{Name: "a", Body: body(50), Method: methodStore},
				zipEnt{Name: "b", Body: body(50), Method: methodDeflate})
		}, lim: limit.Limits{Expanded: 100, File: 50}, files: 2, allocs: 2},
		{name: "gzip file over the per-file limit", data: func(t *testing.T) []byte { return gz(t, []byte(body(5000))) },
			dist: "big.txt.gz", lim: limit.Limits{File: 1000}, want: &limit.Error{Kind: limit.File, Max: 1000, Path: "big.txt"}},
		{name: "gzip file over the expanded limit", data: func(t *testing.T) []byte { return gz(t, []byte(body(5000))) },
			dist: "big.txt.gz", lim: limit.Limits{File: 10000, Expanded: 1000}, want: &limit.Error{Kind: limit.Expanded, Max: 1000, Path: "big.txt"}},
		{name: "gzip file at the limit", data: func(t *testing.T) []byte { return gz(t, []byte(body(5000))) },
			dist: "big.txt.gz", lim: limit.Limits{File: 5000, Expanded: 5000}, files: 1, allocs: 1},
		{name: "xz file over the per-file limit", data: func(t *testing.T) []byte { return xzc(t, []byte(body(5000))) },
			dist: "big.xz", lim: limit.Limits{File: 1000}, want: &limit.Error{Kind: limit.File, Max: 1000, Path: "big"}},
		{name: "raw file over the per-file limit", data: func(t *testing.T) []byte { return []byte(body(101)) },
			dist: "x.whl", lim: limit.Limits{File: 100}, want: &limit.Error{Kind: limit.File, Max: 100, Path: "x.whl"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dist := tc.dist
			if dist == "" {
				dist = "dist"
			}
			r := walk(t, tc.data(t), dist, tc.lim)
			if tc.want == nil {
				if r.Err != nil {
					t.Fatalf("Walk: %v", r.Err)
				}
			} else {
				le := as[*limit.Error](t, r.Err)
				if *le != *tc.want {
					t.Errorf("limit error %+v, want %+v", *le, *tc.want)
				}
			}
			if len(r.Files) != tc.files || r.Allocs != tc.allocs {
				t.Errorf("%d files emitted, %d buffers taken; want %d and %d", len(r.Files), r.Allocs, tc.files, tc.allocs)
			}
		})
	}
}

// TestLimitErrorPassesThrough checks that a limit error is not reported as
// a defect of the input.
func TestLimitErrorPassesThrough(t *testing.T) {
	r := walk(t, gz(t, makeTar(t, reg("a", "1234"))), "x", limit.Limits{File: 3})
	var e *Error
	if errors.As(r.Err, &e) {
		t.Errorf("limit error %v is also an *Error", r.Err)
	}
	as[*limit.Error](t, r.Err)
}

// TestTarExpandedOneByteOver: the tar walk holds the expanded total to the
// byte, as the zip walk does ("zip expanded total one byte over the
// limit"): files of 50 and 51 bytes under a limit of 100 fail at the
// second, whose size alone is under every limit.
func TestTarExpandedOneByteOver(t *testing.T) {
	data := makeTar(t, reg("a", strings.Repeat("x", 50)), reg("b", strings.Repeat("x", 51)))
	r := walk(t, data, "dist", limit.Limits{Expanded: 100, File: 51})
	le := as[*limit.Error](t, r.Err)
	if want := (limit.Error{Kind: limit.Expanded, Max: 100, Path: "b"}); *le != want {
		t.Errorf("limit error %+v, want %+v", *le, want)
	}
	if len(r.Files) != 1 || r.Allocs != 1 {
		t.Errorf("%d files emitted, %d buffers taken; want 1 and 1", len(r.Files), r.Allocs)
	}
}
