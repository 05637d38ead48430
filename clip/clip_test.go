package clip

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkBound fails unless got holds at most n bytes (Default for n <= 0)
// and, cut from valid UTF-8, is valid UTF-8 itself.
func checkBound(t *testing.T, in, got string, n int) {
	t.Helper()
	if n <= 0 {
		n = Default
	}
	if len(got) > n {
		t.Errorf("%d bytes in: %d bytes out, bound %d", len(in), len(got), n)
	}
	if utf8.ValidString(in) && !utf8.ValidString(got) {
		t.Errorf("%d bytes in: invalid UTF-8 out: %q", len(in), got)
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"short", "abc", 10, "abc"},
		{"exact", "abcdefghij", 10, "abcdefghij"},
		{"tiny bound: prefix only", "abcdefghijk", 10, "abcdefghij"},
		{"cut with marker", strings.Repeat("x", 200), 100, strings.Repeat("x", 65) + "…[cut 135 bytes]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := String(tc.in, tc.n)
			if got != tc.want {
				t.Fatalf("String(%d bytes, %d) = %q, want %q", len(tc.in), tc.n, got, tc.want)
			}
			checkBound(t, tc.in, got, tc.n)
		})
	}
}

func TestStringBoundsHugeInput(t *testing.T) {
	in := strings.Repeat("\x01", 4<<20)
	got := String(in, 0)
	checkBound(t, in, got, 0)
	if !strings.HasSuffix(got, "bytes]") || !strings.Contains(got, "…[cut ") {
		t.Fatalf("no marker: %q", got[len(got)-40:])
	}
}

func TestStringKeepsUTF8(t *testing.T) {
	in := strings.Repeat("é", 1000) // 2 bytes each
	for n := 60; n < 80; n++ {
		checkBound(t, in, String(in, n), n)
	}
}

// TestPath: a plain name is only bounded; one with a control character, a
// double quote or invalid UTF-8 is quoted rune by rune; a huge hostile name
// comes out at about Default bytes with the count of what was cut.
func TestPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"pkg-1.0/setup.py", "pkg-1.0/setup.py"},
		{"pkg-1.0/ünïcode.py", "pkg-1.0/ünïcode.py"},
		{"pkg-1.0/a\nb.py", `"pkg-1.0/a\nb.py"`},
		{`say "hi".py`, `"say \"hi\".py"`},
		{"bad\xffutf8", `"bad\xffutf8"`},
	} {
		if got := Path(tc.in); got != tc.want {
			t.Errorf("Path(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	huge := "../" + strings.Repeat("\x01", 1<<20)
	got := Path(huge)
	if len(got) > Default+64 || !strings.HasPrefix(got, `"../\x01`) || !strings.Contains(got, `"…[cut `) {
		t.Fatalf("Path(1 MiB of control characters): %d bytes: %.80q…", len(got), got)
	}
	if plain := Path(strings.Repeat("a", 1<<20)); len(plain) > Default || !strings.HasSuffix(plain, " bytes]") {
		t.Fatalf("Path(1 MiB of letters): %d bytes", len(plain))
	}
}

// TestEscaped: unprintable runes and invalid bytes escaped, quotes and
// printable text as they are, bounded like Path.
func TestEscaped(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`unknown module "m"`, `unknown module "m"`},
		{"unknown module \"\x1b[8mhidden\"", `unknown module "\x1b[8mhidden"`},
		{"a\rb\u202ec\xffd ü", `a\rb\u202ec\xffd ü`},
	} {
		if got := Escaped(tc.in, 0); got != tc.want {
			t.Errorf("Escaped(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	got := Escaped(strings.Repeat("\x1b", 1<<20), 100)
	if len(got) > 100+32 || !strings.HasPrefix(got, `\x1b`) || !strings.Contains(got, "…[cut ") {
		t.Fatalf("Escaped(1 MiB of ESC, 100): %d bytes: %.80q…", len(got), got)
	}
}

// TestVisible: every rune a terminal acts on or does not show (escape
// sequences, carriage returns, bidi controls, zero-width characters, C1
// controls, line separators, invalid bytes) escaped as strconv.Quote
// escapes it, the runes of keep and printable text as they are.
func TestVisible(t *testing.T) {
	for _, tc := range []struct{ in, keep, want string }{
		{"plain ü 全角 \"q\"", "", "plain ü 全角 \"q\""},
		{"a\x1b]52;c;cHduZWQ=\x07b", "", `a\x1b]52;c;cHduZWQ=\ab`},
		{"w1\u200b", "", `w1\u200b`},
		{"x\u202egnp.exe\u2066\u2069", "", `x\u202egnp.exe\u2066\u2069`},
		{"\r\x1b[2Kclean\u009b2J\u2028\x00\xff", "", `\r\x1b[2Kclean\u009b2J\u2028\x00\xff`},
		{"one\ntwo\r\n", "\n", "one\ntwo\\r\n"},
		{"tab\there", "\t", "tab\there"},
		// Printable to strconv, drawn as nothing (default-ignorable): a
		// combining grapheme joiner, Hangul fillers, a Khmer inherent
		// vowel, variation selectors (an ideographic one too).
		{"w1\u034f", "", `w1\u034f`},
		{"w1\u3164\uffa0\u115f", "", `w1\u3164\uffa0\u115f`},
		{"w1\u17b4", "", `w1\u17b4`},
		{"w1\ufe0f\U000e0100", "", `w1\ufe0f\U000e0100`},
	} {
		if got := Visible(tc.in, tc.keep); got != tc.want {
			t.Errorf("Visible(%q, %q) = %q, want %q", tc.in, tc.keep, got, tc.want)
		}
	}
}

func TestError(t *testing.T) {
	if Error(nil, 10) != "" {
		t.Fatal("nil error not empty")
	}
	in := strings.Repeat("e", 5000)
	checkBound(t, in, Error(errors.New(in), 100), 100)
}

func TestLine(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain", "download failed: 404", "download failed: 404"},
		{"blank", " \t\r\n ", ""},
		{"unicode spaces only", "\u00a0\u2003\u3000\u200b", ""},
		{"NUL and controls", "\x00bad\x00\x07name\x1b[31m", "bad name [31m"},
		{"folds runs, trims ends", "\n  a \t\r\n b\u00a0\u00a0c  ", "a b c"},
		{"invalid UTF-8", "a\xffb", "a\ufffdb"},
		{"keeps printable unicode", "größe überschritten", "größe überschritten"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Line(tc.in, 100); got != tc.want {
				t.Fatalf("Line(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestLineBoundsHugeInput(t *testing.T) {
	for _, in := range []string{
		strings.Repeat("x", 4<<20),
		strings.Repeat("a\x00", 2<<20),
		strings.Repeat("é ", 1<<20),
		strings.Repeat(" ", 4<<20) + "tail",
	} {
		got := Line(in, 256)
		checkBound(t, in, got, 256)
		if strings.ContainsAny(got, "\x00\n\t") || got != strings.TrimSpace(got) || strings.Contains(got, "  ") {
			t.Errorf("%d bytes in: not one folded line: %q", len(in), got)
		}
	}
	if got := Line(strings.Repeat("y", 1000), 100); !strings.HasSuffix(got, "…[cut 935 bytes]") {
		t.Errorf("a cut line says how much was cut: %q", got)
	}
}

// TestURL: user info, query and fragment are hidden, whether the URL parses
// or not; anything else is shown as given.
func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:hunter2@x.example/api":  "https://[redacted]@x.example/api",
		"https://x.example/api?key=hunter2":   "https://x.example/api?[redacted]",
		"https://x.example/#hunter2":          "https://x.example/#[redacted]",
		"https://x.example/?":                 "https://x.example/?[redacted]",
		"https://user:hunter2@x.example:port": "https://[redacted]@x.example:port",
		"https://x.example":                   "https://x.example",
		"not a url":                           "not a url",
		"":                                    "",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := URL("https://x.example/" + strings.Repeat("a", 1000)); len(got) > 300 {
		t.Errorf("a long URL is shown whole: %d bytes", len(got))
	}
}

// TestURLUserInfoWithSeparators: a password (or token) holding an
// unescaped '#', '?' or '/' is user info all the same: no part of it is shown,
// whether the rest parses as a host (user:123) or not.
func TestURLUserInfoWithSeparators(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pa#ss@x.example/api":     "https://[redacted]",
		"https://user:123#456@x.example/api":   "https://[redacted]",
		"https://user:123?456@x.example/a?k=v": "https://[redacted]",
		"https://ghp_t0ken#x@x.example":        "https://[redacted]",
		"//user:p?ss@x.example/p":              "//[redacted]",
		"https://x.example?token=abc@def":      "https://[redacted]",
		"https://user:p#s/s@x.example":         "https://[redacted]",
		"https://user:pa@ss?w@rd@x.example":    "https://[redacted]",
		"https://user:12/ab@x.example/api":     "https://[redacted]",
		"https://AbC/dEf+gh@x.example":         "https://[redacted]",
		"https://x.example/a@b":                "https://[redacted]",
	} {
		got := URL(in)
		if got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
		for _, secret := range []string{"user", "pa", "123", "ghp_t0ken", ":p", "abc", "def", "ss", "12", "ab", "AbC", "dEf"} {
			if strings.Contains(got, secret) {
				t.Errorf("URL(%q) = %q shows %q", in, got, secret)
			}
		}
	}
	// An '@' past a path's '?' or '#' may be in the query or fragment, or
	// close user info holding a '/' and then a '?' or '#': nothing past the
	// scheme either way.
	for _, in := range []string{"https://x.example/a#b@c", "https://x.example/a?k=b@c"} {
		if got := URL(in); got != "https://[redacted]" {
			t.Errorf("URL(%q) = %q, want %q", in, got, "https://[redacted]")
		}
	}
}

// TestURLUserInfoWithSlashThenQuery: user info holding a '/' and then a '?'
// or '#' (https://user:12/ab?cd@host) parses as host "user:12", path "/ab"
// and a query or fragment holding the '@': the rule for an '@' in a path
// stopped at the '?', and the user and the start of the password were shown.
func TestURLUserInfoWithSlashThenQuery(t *testing.T) {
	for _, in := range []string{
		"https://user:12/ab?cd@x.example",
		"https://user:12/ab#cd@x.example/api",
		"https://AbC/dEf?gh@x.example",
	} {
		got := URL(in)
		for _, secret := range []string{"user", "12", "ab", "AbC", "dEf"} {
			if strings.Contains(got, secret) {
				t.Errorf("URL(%q) = %q shows %q", in, got, secret)
			}
		}
	}
}

// TestJSON: the hidden runes of a JSON text are escaped (a surrogate pair
// past U+FFFF, \ufffd for a byte that is not UTF-8), what is printable is
// left as it is, and the value a reader decodes is the same.
func TestJSON(t *testing.T) {
	in := "{\"a\":\"café 全角 \u009b2J\u202e\u200b\u3164\x7f\U000e0041\xff\"}\n"
	got := string(JSON([]byte(in)))
	if want := `{"a":"café 全角 \u009b2J\u202e\u200b\u3164\u007f\udb40\udc41\ufffd"}` + "\n"; got != want {
		t.Errorf("JSON(%q) = %q, want %q", in, got, want)
	}
	var a, b map[string]string
	if json.Unmarshal([]byte(in), &a) != nil || json.Unmarshal([]byte(got), &b) != nil || a["a"] != b["a"] {
		t.Errorf("decoded %q, want %q", b["a"], a["a"])
	}
	if plain := []byte(`{"a":"café"}`); &JSON(plain)[0] != &plain[0] {
		t.Error("a JSON text with nothing to escape was copied")
	}
}

// TestPathAndEscapedShowRunesDrawnAsNothing: Path and Escaped escape the
// runes Visible does, those strconv.IsPrint calls printable but that draw
// nothing included: a member "setup.py\u3164" was shown unquoted, as
// setup.py.
func TestPathAndEscapedShowRunesDrawnAsNothing(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Path("setup.py\u3164"), `"setup.py\u3164"`},
		{Path("a\u202eb.py"), `"a\u202eb.py"`},
		{Path("café.py"), "café.py"},
		{Path(`say "hi".py`), `"say \"hi\".py"`},
		{Escaped("w1\u115f said \x1b[2K", 0), `w1\u115f said \x1b[2K`},
		{Escaped("日本語", 0), "日本語"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}
