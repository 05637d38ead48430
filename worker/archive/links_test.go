package archive

import (
	"archive/tar"
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/worker/limit"
)

func hard(name, target string) tarEntry {
	return tarEntry{Name: name, Type: tar.TypeLink, Linkname: target}
}

func symlink(name, target string) tarEntry {
	return tarEntry{Name: name, Type: tar.TypeSymlink, Linkname: target}
}

func dir(name string) tarEntry { return tarEntry{Name: name, Type: tar.TypeDir} }

// TestHardLinks checks each hard link case against what Python's tarfile
// writes when it extracts the same members (see the package doc).
func TestHardLinks(t *testing.T) {
	type linkCase struct {
		name    string
		entries []tarEntry
		files   []string // paths of the regular files emitted
		links   []link
		err     error // the cause of an *Error, if the walk fails
	}
	// fails is a case whose walk fails with the cause err.
	fails := func(name string, err error, entries ...tarEntry) linkCase {
		return linkCase{name: name, entries: entries, err: err}
	}
	tests := []linkCase{
		{
			name:    "link holds its target's content under its own path",
			entries: []tarEntry{reg("p/data.txt", "DATA"), hard("p/mod.py", "p/data.txt")},
			files:   []string{"p/data.txt"},
			links:   []link{{"p/mod.py", "p/data.txt", "DATA"}},
		},
		{
			name:    "a chain of links holds the first file's content",
			entries: []tarEntry{reg("a.txt", "A"), hard("b", "a.txt"), hard("c.py", "b"), hard("d.py", "c.py")},
			files:   []string{"a.txt"},
			links:   []link{{"b", "a.txt", "A"}, {"c.py", "a.txt", "A"}, {"d.py", "a.txt", "A"}},
		},
		{
			name:    "target path is cleaned like a member name",
			entries: []tarEntry{reg("./p/data.txt", "D"), hard("p/l.py", "./p//x/../data.txt"), hard(`p\m.py`, `p\data.txt`)},
			files:   []string{"p/data.txt"},
			links:   []link{{"p/l.py", "p/data.txt", "D"}, {"p/m.py", "p/data.txt", "D"}},
		},
		{
			name:    "a link moved to another file leaves the first one writable",
			entries: []tarEntry{reg("x", "X1"), reg("y", "Y"), hard("l", "x"), hard("l", "y"), reg("x", "X2")},
			files:   []string{"x", "y", "x"},
			links:   []link{{"l", "x", "X1"}, {"l", "y", "Y"}},
		},
		{
			name:    "a symlink over a link's path unlinks it",
			entries: []tarEntry{reg("x", "X1"), hard("l", "x"), symlink("l", "elsewhere"), reg("x", "X2")},
			files:   []string{"x", "x"},
			links:   []link{{"l", "x", "X1"}},
		},
		{
			name:    "a link to itself stays the same file",
			entries: []tarEntry{reg("x", "X"), hard("x", "x")},
			files:   []string{"x"},
			links:   []link{{"x", "x", "X"}},
		},
		{
			name:    "a link over a rewritten file holds the last content",
			entries: []tarEntry{reg("x", "X1"), reg("x", "X2"), hard("l.py", "x")},
			files:   []string{"x", "x"},
			links:   []link{{"l.py", "x", "X2"}},
		},
		{
			name:    "a link to a directory becomes a directory",
			entries: []tarEntry{dir("p/d/"), hard("p/l", "p/d"), reg("p/l/x.py", "X")},
			files:   []string{"p/l/x.py"},
		},
		{
			name:    "a link to the root becomes a directory",
			entries: []tarEntry{dir("./"), hard("l", "."), hard("m", "./")},
		},
		fails("a link to a later member fails", errLinkTarget, hard("mod.py", "data.txt"), reg("data.txt", "D")),
		fails("a link to a missing member fails", errLinkTarget, reg("a", "A"), hard("mod.py", "b")),
		fails("a link to an implicit directory fails", errLinkTarget, reg("p/a.py", "A"), hard("l", "p")),
		fails("an absolute target fails", errUnsafePath, reg("a", "A"), hard("l", "/etc/shadow")),
		fails("a target outside the root fails", errUnsafePath, reg("a", "A"), hard("p/l", "p/../../a")),
		fails("a link to a symlink fails", errLinkSymlink, reg("a", "A"), symlink("s", "a"), hard("l.py", "s")),
		fails("a link through a symlinked directory fails", errLinkSymlink, reg("d/a", "A"), symlink("s", "d"), hard("l.py", "s/a")),
		fails("a link placed through a symlinked directory fails", errLinkSymlink, reg("a", "A"), dir("d/"), symlink("s", "d"), hard("s/l.py", "a")),
		// pip opens a regular member's path for writing: through a symlink
		// it writes where the link points, links or not.
		fails("a member written through a symlink fails", errWriteThrough, reg("pkg/evil.py", "A"), symlink("pkg/readme.txt", "evil.py"), reg("pkg/readme.txt", "through")),
		fails("a member written through a symlinked directory fails", errWriteThrough, dir("d/"), symlink("s", "d"), reg("s/evil.py", "through")),
		fails("a member written through a symlink after a link fails", errWriteThrough, reg("a", "A"), hard("l.py", "a"), dir("d/"), symlink("s", "d"), reg("s/x", "through")),
		fails("a link after a directory placed through a symlink fails", errLinkThrough, reg("a", "A"), dir("d/"), symlink("s", "d"), dir("s/e/"), hard("l.py", "a")),
		fails("a directory placed through a symlink after a link fails", errLinkThrough, reg("a", "A"), hard("l.py", "a"), dir("d/"), symlink("s", "d"), dir("s/e/")),
		fails("a symlink placed through a symlink after a link fails", errLinkThrough, reg("a", "A"), hard("l.py", "a"), dir("d/"), symlink("s", "d"), symlink("s/t", "../a")),
		{
			name:    "symlinks alone change nothing",
			entries: []tarEntry{reg("a", "A"), symlink("s", "a"), reg("b", "B")},
			files:   []string{"a", "b"},
		},
		fails("a link to a fifo fails", errLinkSpecial, tarEntry{Name: "f", Type: tar.TypeFifo}, hard("l", "f")),
		fails("a link to a device fails", errLinkSpecial, tarEntry{Name: "c", Type: tar.TypeChar}, hard("l", "c")),
		fails("a link over a directory fails", errLinkDir, reg("a", "A"), dir("d/"), hard("d", "a")),
		fails("a member written onto the target of a link fails", errLinkWrite, reg("data.txt", "A"), hard("mod.py", "data.txt"), reg("data.txt", "B")),
		fails("a member written onto a link fails", errLinkWrite, reg("data.txt", "A"), hard("mod.py", "data.txt"), reg("mod.py", "B")),
		fails("a link with an empty name fails", errEmptyPath, reg("a", "A"), hard("./", "a")),
		{
			name:    "long link names (GNU and PAX)",
			entries: []tarEntry{reg("p/"+strings.Repeat("t", 150), "T"), {Name: "p/g", Type: tar.TypeLink, Linkname: "p/" + strings.Repeat("t", 150), Format: tar.FormatGNU}, {Name: "p/" + strings.Repeat("x", 120), Type: tar.TypeLink, Linkname: "p/" + strings.Repeat("t", 150), Format: tar.FormatPAX}},
			files:   []string{"p/" + strings.Repeat("t", 150)},
			links:   []link{{"p/g", "p/" + strings.Repeat("t", 150), "T"}, {"p/" + strings.Repeat("x", 120), "p/" + strings.Repeat("t", 150), "T"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := walk(t, makeTar(t, tc.entries...), "d.tar", noLimits)
			if tc.err != nil {
				ae := as[*Error](t, r.Err)
				if !errors.Is(ae, tc.err) {
					t.Fatalf("error %v, want cause %v", r.Err, tc.err)
				}
				return
			}
			if r.Err != nil {
				t.Fatalf("Walk: %v", r.Err)
			}
			var paths []string
			var expanded int64
			for _, f := range r.Files {
				paths = append(paths, f.Path)
				expanded += int64(len(f.Data))
			}
			if !reflect.DeepEqual(paths, tc.files) {
				t.Errorf("files %q, want %q", paths, tc.files)
			}
			if !reflect.DeepEqual(r.Links, tc.links) {
				t.Errorf("links %+v, want %+v", r.Links, tc.links)
			}
			want := Stats{Format: Tar, Entries: len(tc.entries), Files: len(tc.files) + len(tc.links), Links: len(tc.links), Expanded: expanded}
			if r.Stats != want {
				t.Errorf("stats %+v, want %+v", r.Stats, want)
			}
		})
	}
}

func TestHardLinkErrorNamesLinkAndTarget(t *testing.T) {
	r := walk(t, makeTar(t, hard("pkg/mod.py", "pkg/data.txt")), "d.tar", noLimits)
	ae := as[*Error](t, r.Err)
	want := `pkg/mod.py: hard link to pkg/data.txt: hard link target is not an earlier member`
	if ae.Path != "pkg/mod.py" || r.Err.Error() != want {
		t.Errorf("error %q (path %q), want %q", r.Err, ae.Path, want)
	}
}

// TestManyLinksCostNothing: links to one file are files, but allocate,
// read and count toward Expanded nothing; each is still an entry.
func TestManyLinksCostNothing(t *testing.T) {
	const n = 5000
	body := strings.Repeat("x", 64<<10)
	ents := []tarEntry{reg("p/data.txt", body)}
	for i := range n {
		ents = append(ents, hard("p/l/"+strconv.Itoa(i)+".py", "p/data.txt"))
	}
	lim := limit.Limits{File: 64 << 10, Expanded: 64 << 10, Entries: n + 1}
	r := walk(t, makeTar(t, ents...), "d.tar", lim)
	if r.Err != nil {
		t.Fatalf("Walk: %v", r.Err)
	}
	if r.Allocs != 1 || r.Bytes != int64(len(body)) || r.Stats.Expanded != int64(len(body)) {
		t.Errorf("%d allocs of %d bytes, expanded %d; want one buffer of %d", r.Allocs, r.Bytes, r.Stats.Expanded, len(body))
	}
	if r.Stats.Files != n+1 || r.Stats.Links != n || len(r.Links) != n {
		t.Errorf("stats %+v, %d links; want %d files, %d of them links", r.Stats, len(r.Links), n+1, n)
	}
	// One more link breaks the entries limit.
	r = walk(t, makeTar(t, append(ents, hard("p/one-more.py", "p/data.txt"))...), "d.tar", lim)
	if le := as[*limit.Error](t, r.Err); le.Kind != limit.Entries {
		t.Errorf("error %v, want the entries limit", r.Err)
	}
}

func TestNilLinkFailsAtAHardLink(t *testing.T) {
	alloc := func(_ context.Context, n int) ([]byte, error) { return make([]byte, n), nil }
	emit := func(int, string, []byte) error { return nil }
	_, err := Walk(context.Background(), makeTar(t, reg("a", "A"), hard("b", "a")), "d.tar", noLimits, alloc, emit, nil)
	if ae := as[*Error](t, err); !errors.Is(ae, errLinkNil) || ae.Path != "b" {
		t.Errorf("error %v, want %v for b", err, errLinkNil)
	}
	// Without hard links, nil is fine.
	if _, err := Walk(context.Background(), makeTar(t, reg("a", "A"), dir("d/")), "d.tar", noLimits, alloc, emit, nil); err != nil {
		t.Errorf("Walk without links: %v", err)
	}
}

func TestLinkCallbackErrorStopsTheWalk(t *testing.T) {
	alloc := func(_ context.Context, n int) ([]byte, error) { return make([]byte, n), nil }
	emits := 0
	emit := func(int, string, []byte) error { emits++; return nil }
	_, err := Walk(context.Background(), makeTar(t, reg("a", "A"), hard("b", "a"), reg("c", "C")), "d.tar", noLimits,
		alloc, emit, func(int, string, int) error { return errStop })
	if err != errStop || emits != 1 {
		t.Errorf("error %v after %d emits, want errStop as is after 1", err, emits)
	}
}
