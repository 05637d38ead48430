package clip

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

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
			if len(got) > tc.n {
				t.Fatalf("%d bytes, bound %d", len(got), tc.n)
			}
		})
	}
}

func TestStringBoundsHugeInput(t *testing.T) {
	in := strings.Repeat("\x01", 4<<20)
	got := String(in, 0)
	if len(got) > Default {
		t.Fatalf("%d bytes > Default %d", len(got), Default)
	}
	if !strings.HasSuffix(got, "bytes]") || !strings.Contains(got, "…[cut ") {
		t.Fatalf("no marker: %q", got[len(got)-40:])
	}
}

func TestStringKeepsUTF8(t *testing.T) {
	in := strings.Repeat("é", 1000) // 2 bytes each
	for n := 60; n < 80; n++ {
		got := String(in, n)
		if !utf8.ValidString(got) {
			t.Fatalf("n=%d: invalid UTF-8 %q", n, got)
		}
		if len(got) > n {
			t.Fatalf("n=%d: %d bytes", n, len(got))
		}
	}
}

func TestError(t *testing.T) {
	if Error(nil, 10) != "" {
		t.Fatal("nil error not empty")
	}
	if got := Error(errors.New(strings.Repeat("e", 5000)), 100); len(got) > 100 {
		t.Fatalf("%d bytes", len(got))
	}
}
