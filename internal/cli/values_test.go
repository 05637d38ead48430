package cli

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestPairsHideSecrets: the value of a credentials list, as usage texts and
// configuration logs show it, names the ids only; bad lists are refused.
func TestPairsHideSecrets(t *testing.T) {
	var m map[string]string
	v := Pairs(&m)
	if m != nil {
		t.Fatalf("unset: %v", m)
	}
	if err := v.Set("b=secret-two, a=secret-one=="); err != nil {
		t.Fatal(err)
	}
	if got := v.String(); got != "a=…,b=…" {
		t.Fatalf("String() = %q", got)
	}
	if want := map[string]string{"a": "secret-one==", "b": "secret-two"}; !maps.Equal(m, want) {
		t.Errorf("pairs %v, want %v", m, want)
	}
	for _, bad := range []string{"id", "=secret", "a=1,a=2", "u="} {
		if err := Pairs(&m).Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestSizeOrOff: 0 and "off" turn the setting off; any other value is a
// size.
func TestSizeOrOff(t *testing.T) {
	var n int64
	v := SizeOrOff(&n, 32<<20)
	if v.String() != "32MiB" {
		t.Errorf("default shows %q", v.String())
	}
	for in, want := range map[string]int64{"0": 0, "off": 0, " off ": 0, "64MB": 64e6, "1024": 1024} {
		if err := v.Set(in); err != nil || n != want {
			t.Errorf("%q: %d, %v; want %d", in, n, err, want)
		}
	}
	if v.Set("0"); v.String() != "0" {
		t.Errorf("off shows %q", v.String())
	}
	if err := v.Set("lots"); err == nil {
		t.Error("lots accepted")
	}
}

// TestSizeBound: sizes up to MaxSize (1 PiB) are taken; larger ones, as
// bytes, in a unit or as a float, are refused (a limit near math.MaxInt64
// overflowed limit+1 and read nothing: a file scanned as empty).
func TestSizeBound(t *testing.T) {
	var n int64
	v := Size(&n, 0)
	if err := v.Set("1048576GiB"); err != nil || n != MaxSize {
		t.Fatalf("1 PiB: %d, %v", n, err)
	}
	for _, big := range []string{"9223372036854775807", "1048577GiB", "9.2e18", "1125899906842625"} {
		if err := v.Set(big); err == nil || !strings.Contains(err.Error(), "at most 1048576GiB") {
			t.Errorf("%s: %v", big, err)
		}
	}
}

// TestLoggerDurations: JSON logs write durations as seconds under the same
// keys; text logs keep Go's notation.
func TestLoggerDurations(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("drain", "grace", 25*time.Second, "short", 1500*time.Millisecond, slog.Group("g", "d", time.Minute), "n", 25)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"grace":25,`) || m["short"] != 1.5 || m["g"].(map[string]any)["d"] != 60.0 || m["n"] != 25.0 {
		t.Errorf("json = %s", buf.String())
	}
	buf.Reset()
	log, err = NewLogger(&buf, "info", "text")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("drain", "grace", 25*time.Second)
	if !strings.Contains(buf.String(), "grace=25s") {
		t.Errorf("text = %s", buf.String())
	}
	for _, bad := range [][2]string{{"loud", "json"}, {"info", "xml"}} {
		if _, err := NewLogger(&buf, bad[0], bad[1]); exitCode(err) != 2 {
			t.Errorf("%v: %v, want a usage error", bad, err)
		}
	}
}

// TestLogValues: the configuration log shows durations, sizes, integers,
// booleans and lists as themselves, other values as their text.
func TestLogValues(t *testing.T) {
	var (
		n          int
		d          time.Duration
		size, off  int64
		b          bool
		list       []string
		share      float64
		str        string
		repeatable []string
	)
	for _, tc := range []struct {
		v    Value
		want any
	}{
		{Int(&n, 3), 3},
		{Duration(&d, time.Minute), time.Minute},
		{Size(&size, 1<<20), int64(1 << 20)},
		{Bool(&b, true), true},
		{List(&list, []string{"a", "b"}), []string{"a", "b"}},
		{Share(&share, 0.25), "0.25"},
		{SizeOrOff(&off, 0), "0"},
		{String(&str, "x"), "x"},
		{Repeated(&repeatable), ""},
	} {
		if got := logValue(tc.v); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: log value %#v, want %#v", tc.v.Type(), got, tc.want)
		}
	}
}

// TestLogValuesHideURLUserinfo: a URL setting carrying credentials
// (https://user:pass@host) is logged without them; other text is logged as
// it is.
func TestLogValuesHideURLSecrets(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:hunter2@x.example/api": "https://[redacted]@x.example/api",
		"https://hunter2@x.example":          "https://[redacted]@x.example",
		// The '@' after '?' may end user info (password p@ss:w@rd@host:8000?a=b):
		// nothing past the scheme is shown (clip.TestURLUserInfoWithSeparators).
		"http://u:p@ss:w@rd@host:8000?a=b@c": "http://[redacted]",
		"https://x.example/?key=hunter2":     "https://x.example/?[redacted]",
		// An '@' in a path may close user info holding a '/' (a base64
		// token): nothing past the scheme either.
		"https://x.example/a@b": "https://[redacted]",
		"https://AbC/dE@host":   "https://[redacted]",
		"https://x.example":     "https://x.example",
		"user@host":             "user@host",
		"":                      "",
	} {
		s := in
		if got := logValue(String(&s, in)); got != want {
			t.Errorf("%q: logged %q, want %q", in, got, want)
		}
	}
}
