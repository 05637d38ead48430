package archive

import (
	"archive/tar"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dragonfly-fleet/fleet/clip"
)

// controlName returns n bytes of control characters (no NUL, no "/").
func controlName(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(1 + i%31)
	}
	return string(b)
}

// maxErrorText bounds an error text: the path and the cause, each at most
// clip.Default bytes plus a marker, and a separator.
const maxErrorText = 2*clip.Default + 64

// TestHugeNamesInErrors: a member name of a MiB of control characters
// (quoted, four times that) gives an error text of a few KiB that still says
// what was cut; Error.Path keeps the name exactly.
func TestHugeNamesInErrors(t *testing.T) {
	huge := controlName(1<<20 - 4096) // archive/tar reads PAX records up to 1 MiB
	zipName := controlName(65535 - 3) // a zip name's length is 16 bits
	tests := []struct {
		name string
		data func(t *testing.T) []byte
		path string // Error.Path
		err  error  // its cause
	}{
		{"tar, unsafe path", func(t *testing.T) []byte {
			return makeTar(t, tarEntry{Name: "../" + huge, Type: tar.TypeReg, Body: "x", Format: tar.FormatPAX})
		}, "../" + huge, errUnsafePath},
		{"tar.gz, truncated member", func(t *testing.T) []byte {
			b := makeTar(t, tarEntry{Name: "p/" + huge, Type: tar.TypeReg, Body: strings.Repeat("x", 4096), Format: tar.FormatPAX})
			return gz(t, b[:len(b)-2048])
		}, "p/" + huge, nil},
		{"tar, hard link to a huge missing target", func(t *testing.T) []byte {
			return makeTar(t, tarEntry{Name: "l.py", Type: tar.TypeLink, Linkname: "p/" + huge, Format: tar.FormatPAX})
		}, "l.py", errLongPath},
		{"tar, hard link with a huge unsafe target", func(t *testing.T) []byte {
			return makeTar(t, tarEntry{Name: "l.py", Type: tar.TypeLink, Linkname: "/" + huge, Format: tar.FormatPAX})
		}, "l.py", errUnsafePath},
		{"zip, unsafe path", func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "../" + zipName, Body: "x", Method: methodStore})
		}, "../" + zipName, errUnsafePath},
		{"zip, local header disagrees", func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "p/" + zipName, LocalName: ptr("p/other"), Body: "x", Method: methodStore})
		}, "p/" + zipName, errNameMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := walk(t, tc.data(t), "d", noLimits)
			ae := as[*Error](t, r.Err)
			if ae.Path != tc.path {
				t.Errorf("Error.Path is %d bytes, want the %d-byte name exactly", len(ae.Path), len(tc.path))
			}
			if tc.err != nil && !errors.Is(r.Err, tc.err) {
				t.Errorf("error %.200q, want cause %v", r.Err, tc.err)
			}
			msg := r.Err.Error()
			if len(msg) > maxErrorText {
				t.Errorf("error text is %d bytes, want at most %d", len(msg), maxErrorText)
			}
			if !strings.Contains(msg, "…[cut ") || !utf8.ValidString(msg) || strings.ContainsAny(msg, "\n\r\x01") {
				t.Errorf("error text %.300q: want a valid single line, quoted, with a cut marker", msg)
			}
		})
	}
}

func TestPrintablePath(t *testing.T) {
	long := strings.Repeat("é", clip.Default) // 2 bytes each
	tests := []struct {
		in, want string
	}{
		{"pkg/a.py", "pkg/a.py"},
		{"a\nb", `"a\nb"`},
		{`say "hi".py`, `"say \"hi\".py"`},
		{"bad\xffbyte", `"bad\xffbyte"`},
	}
	for _, tc := range tests {
		if got := printablePath(tc.in); got != tc.want {
			t.Errorf("printablePath(%.40q) = %.80q, want %.80q", tc.in, got, tc.want)
		}
	}
	// A long printable path is cut to clip.Default bytes, at a rune.
	if got := printablePath(long); len(got) > clip.Default || !utf8.ValidString(got) || !strings.HasPrefix(got, "éé") ||
		!strings.HasSuffix(got, " bytes]") || !strings.HasPrefix(long, got[:strings.Index(got, "…[cut ")]) {
		t.Errorf("printablePath(long) = %q", got)
	}
	// A quoted path is cut at a whole escape, and the marker counts the
	// input bytes not shown.
	in := "\x01" + strings.Repeat("\x02", 10000)
	got := printablePath(in)
	shown := (clip.Default - 2) / 4 // "\x02" is 4 bytes quoted
	want := `"` + strings.Repeat(`\x01`, 1) + strings.Repeat(`\x02`, shown-1) + `"…[cut ` + strconv.Itoa(len(in)-shown) + ` bytes]`
	if got != want {
		t.Errorf("quoted cut:\n got %.120q…%q\nwant %.120q…%q", got, got[len(got)-40:], want, want[len(want)-40:])
	}
}
