package pkgindex

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A requirement file with every accepted line form.
const goodRequirements = "# pip-compile output\n" +
	"\n" +
	"   \t\n" +
	"requests==2.31.0\n" +
	"Foo_Bar == 1.0   # trailing comment\n" +
	"urllib3[socks,secure]==2.0.7\n" +
	"idna==3.4 ; python_version >= \"3.8\" and platform_machine == \"x86-64\"\n" +
	"certifi==2023.7.22 \\\n" +
	"    --hash=sha256:539cc1d13202e33ca466e88b2807e29f4c13049d6d87031a3c110744495cb082 \\\n" +
	"    --hash sha256:92d6037539857d8206b8f6ae472e8b77db8058fec5937a1ef3f54304089edbb9\n" +
	"    # via requests\n" +
	"charset-normalizer==3.3.0 --config-settings=x=y\r\n" +
	"--require-hashes\n" +
	"--only-binary :all:\n" +
	"--trusted-host example.org\n" +
	"# a comment ending in a backslash does not continue \\\n" +
	"six==1.16.0\n" +
	"requests==2.31.0.0\n" + // the same pin again (PEP 440 equal): listed once
	"zipp==3.17.0#not-a-comment-without-space\n"

func TestParseRequirements(t *testing.T) {
	got, err := ParseRequirements("req.txt", []byte(strings.Replace(goodRequirements, "zipp==3.17.0#not-a-comment-without-space\n", "zipp==3.17.0 \\", 1)))
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{
		{Name: "requests", Version: "2.31.0", Origin: "req.txt:4"},
		{Name: "Foo_Bar", Version: "1.0", Origin: "req.txt:5"},
		{Name: "urllib3", Version: "2.0.7", Origin: "req.txt:6"},
		{Name: "idna", Version: "3.4", Origin: "req.txt:7"},
		{Name: "certifi", Version: "2023.7.22", Origin: "req.txt:8", Hashes: []string{
			"sha256:539cc1d13202e33ca466e88b2807e29f4c13049d6d87031a3c110744495cb082",
			"sha256:92d6037539857d8206b8f6ae472e8b77db8058fec5937a1ef3f54304089edbb9",
		}},
		{Name: "charset-normalizer", Version: "3.3.0", Origin: "req.txt:12"},
		{Name: "six", Version: "1.16.0", Origin: "req.txt:17"},
		{Name: "zipp", Version: "3.17.0", Origin: "req.txt:19"}, // a '\' on the last line continues nothing
	}
	if len(got) != len(want) {
		t.Fatalf("got %d targets %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("target %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseRequirementsErrors(t *testing.T) {
	for _, tc := range []struct{ line, reason string }{
		{"requests>=2.0", "not an exact pin"},
		{"requests~=2.0", "not an exact pin"},
		{"requests!=2.0", "not an exact pin"},
		{"requests<3", "not an exact pin"},
		{"requests (==2.0)", "not an exact pin"},
		{"requests==2.0,<3", "several version specifiers"},
		{"requests==2.*", "wildcards"},
		{"requests===2.0", "arbitrary equality"},
		{"requests", "not pinned"},
		{"requests[security]", "not pinned"},
		{"requests==", "empty version"},
		{"requests==two", "not a valid PEP 440 version"},
		{"requests[sec==1.0", "unclosed extras"},
		{"requests[-x]==1.0", "extra: invalid project name"},
		{"requests @ https://example.org/requests.whl", "URL"},
		{"requests @ file:///tmp/x.whl", "URL"},
		{"https://example.org/requests-2.0.tar.gz", "URL or path"},
		{"./local/dir", "URL or path"},
		{"/abs/pkg.whl", "URL or path"},
		{"-e git+https://example.org/x.git#egg=x", "editable"},
		{"--editable=.", "editable"},
		{"-r other.txt", "nested requirement files"},
		{"--requirement=other.txt", "nested requirement files"},
		{"-c constraints.txt", "constraint files"},
		{"-i https://example.org/simple", "index options"},
		{"--index-url https://example.org/simple", "index options"},
		{"--extra-index-url=https://example.org/simple", "index options"},
		{"--find-links ./wheels", "index options"},
		{"--no-index", "index options"},
		{"--frobnicate", "unknown option"},
		{"requests==2.0 --install-option=x", "unsupported option"},
		{"requests==2.0 --hash", "without a value"},
		{"requests==2.0 --hash=deadbeef", "not ALGORITHM:HEX"},
		{"${PKG}==1.0", "does not start with a project name"},
		{"foo$==1.0", "not an exact pin"},
	} {
		data := "six==1.16.0\n# comment\n" + tc.line + "\n"
		_, err := ParseRequirements("dir/req.txt", []byte(data))
		var re *RequirementError
		if !errors.As(err, &re) {
			t.Errorf("%q: error %v, want a *RequirementError", tc.line, err)
			continue
		}
		if re.File != "dir/req.txt" || re.Line != 3 || !strings.Contains(re.Reason, tc.reason) {
			t.Errorf("%q: %+v, want dir/req.txt line 3, reason containing %q", tc.line, re, tc.reason)
		}
		if !strings.HasPrefix(err.Error(), "dir/req.txt:3: ") {
			t.Errorf("%q: message %q does not start with the file and line", tc.line, err)
		}
	}
}

func TestParseRequirementsContinuationLine(t *testing.T) {
	// The error names the first physical line of a continued line.
	_, err := ParseRequirements("r.txt", []byte("a==1\nb>=1 \\\n  --hash=sha256:00\n"))
	var re *RequirementError
	if !errors.As(err, &re) || re.Line != 2 || !strings.Contains(re.Text, "--hash=sha256:00") {
		t.Fatalf("error %v, want line 2 with the joined text", err)
	}
}

func TestParseRequirementsBOM(t *testing.T) {
	got, err := ParseRequirements("r.txt", []byte("\uFEFFrequests==2.31.0\r\n"))
	if err != nil || len(got) != 1 || got[0].Name != "requests" {
		t.Fatalf("%+v, %v", got, err)
	}
}

func TestParseRequirementsConflict(t *testing.T) {
	_, err := ParseRequirements("r.txt", []byte("foo-bar==1.0\nFoo_Bar==2.0\n"))
	if err == nil || !strings.Contains(err.Error(), "r.txt:2:") || !strings.Contains(err.Error(), "already pinned to 1.0 at r.txt:1") {
		t.Fatalf("error %v, want a conflict at line 2 naming line 1", err)
	}
}

func TestParseRequirementsManyErrors(t *testing.T) {
	data := strings.Repeat("bad>=1 "+strings.Repeat("x", 1_000)+"\n", 1000)
	_, err := ParseRequirements("r.txt", []byte(data))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "r.txt:1:") || !strings.Contains(msg, "990 more lines with errors") || len(msg) > 8<<10 {
		t.Fatalf("error of %d bytes, want the first lines, a count of the rest, at most 8 KiB: %.500s", len(msg), msg)
	}
}

func TestReadRequirements(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "requirements.txt")
	if err := os.WriteFile(path, []byte("requests==2.31.0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRequirements(path)
	if err != nil || len(got) != 1 || got[0].Origin != path+":1" || got[0].Version != "2.31.0" {
		t.Fatalf("ReadRequirements = %+v, %v", got, err)
	}
	big := filepath.Join(dir, "big.txt")
	if err := os.WriteFile(big, make([]byte, MaxRequirementsSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRequirements(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized file: %v", err)
	}
	if _, err := ReadRequirements(filepath.Join(dir, "missing.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestParseRequirementsSplitsLinesAsPip: pip splits a requirement file with
// Python's str.splitlines, which ends a line at \r, \v, \f, \x1c-\x1e,
// U+0085, U+2028 and U+2029 as well as at \n. Split at \n alone, a pin after
// such a break shared the line of a comment (or of a pin's trailing
// comment) and was dropped without a word: `dragonfly scan -r` read the
// file clean while pip installed evil==6.6.6, never scanned.
func TestParseRequirementsSplitsLinesAsPip(t *testing.T) {
	for _, sep := range []string{"\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\u0085", "\u2028", "\u2029"} {
		data := "# pinned by pip-compile" + sep + "evil==6.6.6\n" +
			"requests==2.31.0  # security fix" + sep + "evil2==1.0\n"
		got, err := ParseRequirements("req.txt", []byte(data))
		want := []Target{
			{Name: "evil", Version: "6.6.6", Origin: "req.txt:2"},
			{Name: "requests", Version: "2.31.0", Origin: "req.txt:3"},
			{Name: "evil2", Version: "1.0", Origin: "req.txt:4"},
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("lines broken by %q: %+v, %v; want %+v (pip's lines)", sep, got, err, want)
		}
	}
	// A \r\n is one break, as before.
	got, err := ParseRequirements("req.txt", []byte("a==1\r\nb==2\r\n"))
	if want := []Target{{Name: "a", Version: "1", Origin: "req.txt:1"}, {Name: "b", Version: "2", Origin: "req.txt:2"}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("CRLF: %+v, %v; want %+v", got, err, want)
	}
}

// TestParseRequirementsRefusesOtherEncodings: pip decodes a requirement
// file with the encoding a '#' line among its first two declares
// ("coding: NAME", PEP 263's form; pip 23.2.1's auto_decode), unless it
// starts with a byte order mark. Under latin-1 the byte 0x85 is U+0085,
// a line break; under utf-7 "+AAo-" is one, under unicode_escape the two
// characters `\n`. Each hid evil==6.6.6 in a comment's line: the file read
// as requests alone while pip installed evil, never scanned. A file
// declaring another encoding than UTF-8 or ASCII is refused, naming the
// line; a UTF-8 one, or any declaration after a UTF-8 byte order mark, is
// read as before.
func TestParseRequirementsRefusesOtherEncodings(t *testing.T) {
	for _, data := range []string{
		"# -*- coding: latin-1 -*-\n# pinned\x85evil==6.6.6\nrequests==2.31.0\n",
		"requests==2.31.0\n# coding=utf-7\n# pinned +AAo-evil==6.6.6\n",
		"# vim: set fileencoding=unicode_escape :\n# pinned\\nevil==6.6.6\nrequests==2.31.0\n",
	} {
		got, err := ParseRequirements("req.txt", []byte(data))
		var re *RequirementError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "encoding") {
			t.Errorf("%q: %+v, %v; want an error naming the declared encoding (pip reads evil==6.6.6)", data, got, err)
		}
	}
	for _, data := range []string{
		"# -*- coding: UTF-8 -*-\nrequests==2.31.0\n",
		"requests==2.31.0\n#coding:utf8\n",
		"# coding: ascii\nrequests==2.31.0\n",
		"\uFEFF# coding: latin-1\nrequests==2.31.0\n",             // pip decodes UTF-8: the mark wins
		"requests==2.31.0\nrequests==2.31.0\n# coding: latin-1\n", // the third line: not read by pip
	} {
		got, err := ParseRequirements("req.txt", []byte(data))
		if err != nil || len(got) != 1 || got[0].Name != "requests" {
			t.Errorf("%q: %+v, %v; want requests==2.31.0", data, got, err)
		}
	}
}

// TestParseRequirementsEveryOptionOfALine: pip reads every option of an
// option line (shlex-split), so an index, nested file or editable after an
// ignored option must be refused like one at the start of the line (it was
// skipped: "--pre --index-url URL" sent pip to another index, "--pre -r
// other.txt" installed a file never scanned, and the scan read clean).
func TestParseRequirementsEveryOptionOfALine(t *testing.T) {
	for _, tc := range []struct{ line, reason string }{
		{"--pre --index-url https://evil.example/simple", "index options"},
		{"--pre --extra-index-url https://evil.example/simple", "index options"},
		{"--require-hashes\t-i https://evil.example/simple", "index options"},
		{"--only-binary :all: --find-links=https://evil.example/", "index options"},
		{"--prefer-binary -r other.txt", "nested requirement files"},
		{"--prefer-binary -c constraints.txt", "constraint files"},
		{"--trusted-host example.org -e git+https://evil.example/x.git#egg=x", "editable"},
		{"--pre --frobnicate", "unknown option"},
		{`--pre "--index-url=https://evil.example/simple"`, "quotes"},
		{`--pre '-i' https://evil.example/simple`, "quotes"},
		{"--pre ${EXTRA}", "environment variables"}, // EXTRA="-r other.txt" to pip
	} {
		_, err := ParseRequirements("req.txt", []byte("six==1.16.0\n"+tc.line+"\n"))
		var re *RequirementError
		if !errors.As(err, &re) || re.Line != 2 || !strings.Contains(re.Reason, tc.reason) {
			t.Errorf("%q: error %v, want req.txt line 2, reason containing %q", tc.line, err, tc.reason)
		}
	}
	// Values of ignored options are skipped as pip skips them, whatever
	// they look like; fields that are not options are ignored by pip too.
	for _, line := range []string{"--only-binary :all: --pre", "--no-binary :none: --prefer-binary", "--use-feature=truststore --trusted-host h1 h2"} {
		got, err := ParseRequirements("req.txt", []byte("six==1.16.0\n"+line+"\n"))
		if err != nil || len(got) != 1 {
			t.Errorf("%q: %+v, %v; want six only", line, got, err)
		}
	}
}

// TestRequirementOptionsReadAsPipSplitsThem: pip shlex-splits a pin's
// options and expands ${VAR} in the line first (pip 23.2.1's
// break_args_options, expand_env_variables). "--hash=sha256:HEX\"\"" is
// the hash HEX to pip, which then installs bytes of that digest; the scan
// read a value that is no hex, matching no download, and passed it over,
// so the release read clean while pip took a file the scan never saw.
func TestRequirementOptionsReadAsPipSplitsThem(t *testing.T) {
	evil := strings.Repeat("ab", 32)
	for _, tc := range []struct{ line, reason string }{
		{`six==1.16.0 --hash=sha256:` + evil + `""`, "quotes or backslashes"},
		{`six==1.16.0 --hash=sha256:` + evil[:10] + `''` + evil[10:], "quotes or backslashes"},
		{`six==1.16.0 --hash=sha256:` + evil[:10] + `\` + evil[10:], "quotes or backslashes"},
		{`six==1.16.0 --hash "sha256:` + evil + `"`, "quotes or backslashes"},
		{`six==1.16.0 ; python_version > "3" ${OPTS}`, "environment variables"}, // OPTS="--hash=sha256:..."
		{`six==1.16.0 --hash=sha256:${H}`, "environment variables"},
	} {
		_, err := ParseRequirements("req.txt", []byte(tc.line+"\n"))
		var re *RequirementError
		if !errors.As(err, &re) || re.Line != 1 || !strings.Contains(re.Reason, tc.reason) {
			t.Errorf("%q: error %v, want req.txt line 1, reason containing %q", tc.line, err, tc.reason)
		}
	}
	// Quotes in a marker, before the options, are the marker's.
	pins, err := ParseRequirements("req.txt", []byte(`six==1.16.0 ; python_version > "3" --hash=sha256:`+evil+"\n"))
	if err != nil || len(pins) != 1 || len(pins[0].Hashes) != 1 || pins[0].Hashes[0] != "sha256:"+evil {
		t.Errorf("marker with quotes: %+v, %v; want one pin with its hash", pins, err)
	}
}

// TestParseRequirementsRefusesArchivePaths: pip 23.2.1's
// parse_req_from_line takes a requirement ending in an archive extension
// (is_archive_file) for the path of a local archive, even when it reads as
// a pin: "foo==1.0+a.zip" is ./foo==1.0+a.zip to pip ("Processing
// ./foo==1.0+a.zip"), an unnamed requirement the index never serves. The
// scan pinned foo 1.0+a.zip and scanned the index's files instead.
func TestParseRequirementsRefusesArchivePaths(t *testing.T) {
	for _, line := range []string{
		"foo==1.0+a.zip",
		"foo[x]==1.0+x.tar.gz ; python_version>'3'",
		"foo==1.0+loc.TBZ --hash=sha256:" + strings.Repeat("a", 64),
		"foo == 1.0+y.tlz",
		"foo==1.0+x.tar.lzma",
		"foo==1.0+x.whl",
	} {
		_, err := ParseRequirements("req.txt", []byte(line+"\n"))
		var re *RequirementError
		if !errors.As(err, &re) || re.Line != 1 || !strings.Contains(re.Reason, "local archive") {
			t.Errorf("%q: error %v, want req.txt line 1, reason containing %q", line, err, "local archive")
		}
	}
	// A local label that only ends like an extension's word is a pin to pip.
	pins, err := ParseRequirements("req.txt", []byte("foo==1.0+zip\n"))
	if err != nil || len(pins) != 1 || pins[0].Version != "1.0+zip" {
		t.Errorf("foo==1.0+zip: %+v, %v; want the pin foo==1.0+zip", pins, err)
	}
}

// TestParseRequirementsJoinsAndSplitsAsPip: each file is read as pip
// 23.2.1 reads it (each want checked with pip's parse_requirements). pip
// joins a line ending in '\' to the next with no space and strips every
// '\' at its ends (join_lines), cuts the requirement from its options at
// ' ' only and shlex-splits the options at ' ' and tab only
// (break_args_options), and a comment starts at '#' after any of Python's
// whitespace (COMMENT_RE). The scan joined with a space and split at any
// Unicode space, so it read hashes pip never checks and missed a comment.
func TestParseRequirementsJoinsAndSplitsAsPip(t *testing.T) {
	a, b := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	for _, tc := range []struct {
		file   string
		want   string // pinned name==version
		hashes []string
	}{
		{"foo==1.0 --hash=" + a + "\\\n--hash=" + b + "\n", "foo==1.0", []string{a + "--hash=" + b}},
		{"foo==1.0 --hash=" + a + "\u00a0--hash=" + b + "\n", "foo==1.0", []string{a + "\u00a0--hash=" + b}},
		{"foo==1.0 --hash\\\n=" + a + "\n", "foo==1.0", []string{a}},
		{"foo==1.0 --hash=" + a + "\x1f#c\n", "foo==1.0", []string{a}},
		{"foo==1.0 --hash=" + a + "\u00a0# c --hash=" + b + "\n", "foo==1.0", []string{a}},
		{"foo==1.0 \\\n    --hash=" + a + " \\\n    --hash=" + b + "\n", "foo==1.0", []string{a, b}},
		{"\u00a0# comment \\\nbar==2.0\n", "bar==2.0", nil},
		{"foo==1.0\\\\\n", "foo==1.0", nil},
		{"foo==1.\\\n0\n", "foo==1.0", nil},
	} {
		pins, err := ParseRequirements("req.txt", []byte(tc.file))
		if err != nil {
			t.Errorf("%q: %v", tc.file, err)
			continue
		}
		if len(pins) != 1 || pins[0].Name+"=="+pins[0].Version != tc.want || !reflect.DeepEqual(pins[0].Hashes, tc.hashes) {
			t.Errorf("%q: %+v, want %s with hashes %q", tc.file, pins, tc.want, tc.hashes)
		}
	}
}

// TestPinHashBeforeAUnitSeparatorCommentIsChecked: "--hash=sha256:HEX\x1f#c"
// is the hash HEX to pip (\x1f is whitespace to Python, so "#c" is a
// comment), which then installs a download with that digest. The scan read
// "HEX\x1f#c", no hex, which checkPinHashes passes over as matching no
// download: the pin resolved clean with a hash naming no file it verified.
func TestPinHashBeforeAUnitSeparatorCommentIsChecked(t *testing.T) {
	evil := strings.Repeat("ab", 32)
	pins, err := ParseRequirements("req.txt", []byte("six==1.16.0 --hash=sha256:"+evil+"\x1f#c\n"))
	if err != nil || len(pins) != 1 {
		t.Fatalf("got %+v, %v; want one pin", pins, err)
	}
	rel := &Release{Name: "six", Version: "1.16.0", Distributions: []Distribution{{Filename: "six-1.16.0.tar.gz", SHA256: strings.Repeat("cd", 32)}}}
	if _, err := checkPinHashes(pins[0], rel); err == nil || !strings.Contains(err.Error(), "no file the index lists") {
		t.Errorf("hashes %q: error %v, want the hash refused as naming no file of the release", pins[0].Hashes, err)
	}
}
