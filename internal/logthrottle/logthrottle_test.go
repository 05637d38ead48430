package logthrottle

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestOneLinePerKey: one line per key and interval; the first line after
// counts the ones held back; beyond max keys, new keys share one, and keys
// whose interval is over make room.
func TestOneLinePerKey(t *testing.T) {
	th := New(time.Minute, 2)
	type step struct {
		key  string
		at   time.Duration
		ok   bool
		held int64
	}
	for i, s := range []step{
		{"a", 0, true, 0},
		{"a", time.Second, false, 0},
		{"a", 59 * time.Second, false, 0},
		{"b", 59 * time.Second, true, 0},
		{"c", 59 * time.Second, true, 0}, // full: shares OtherKeys
		{"d", 59 * time.Second, false, 0},
		{"a", 60 * time.Second, true, 2},
		{"e", 121 * time.Second, true, 0}, // the stale keys make room
		{"e", 122 * time.Second, false, 0},
	} {
		ok, held := th.Allow(s.key, 1, t0.Add(s.at))
		if ok != s.ok || held != s.held {
			t.Fatalf("step %d (%s at %s): %v %d, want %v %d", i, s.key, s.at, ok, held, s.ok, s.held)
		}
	}
	if len(th.keys) > 3 {
		t.Fatalf("%d keys kept, want at most max+1", len(th.keys))
	}
}

// TestBurst: burst lines per key and interval, then none until the
// interval is over; the first line after counts the ones held back.
func TestBurst(t *testing.T) {
	th := New(time.Minute, 8)
	var got []bool
	for i := range 5 {
		ok, held := th.Allow("a", 3, t0.Add(time.Duration(i)*time.Second))
		if held != 0 {
			t.Fatalf("line %d: held %d within the interval", i, held)
		}
		got = append(got, ok)
	}
	if want := []bool{true, true, true, false, false}; !slices.Equal(got, want) {
		t.Fatalf("allowed %v, want %v", got, want)
	}
	if ok, held := th.Allow("a", 3, t0.Add(time.Minute)); !ok || held != 2 {
		t.Fatalf("after the interval: %v %d, want true 2", ok, held)
	}
	if ok, _ := th.Allow("a", 3, t0.Add(time.Minute+time.Second)); !ok {
		t.Fatal("the new interval's burst was not let through")
	}
}

// TestGroupBoundsNewKeys: keys of a group share the group's burst per
// interval, so lines under new keys (a worker id made up for each session)
// stop at it; a line the group held back is counted under the group, and
// its next line let through says so. Other groups, and keys outside any
// group, are not held back by it.
func TestGroupBoundsNewKeys(t *testing.T) {
	th := New(time.Minute, 1024)
	let := 0
	for i := range 100 {
		if ok, _ := th.AllowIn("ended", 5, "id-"+strconv.Itoa(i), 4, t0); ok {
			let++
		}
	}
	if let != 5 {
		t.Fatalf("100 new keys let %d lines through, want the group's 5", let)
	}
	if ok, _ := th.AllowIn("connected", 5, "other", 4, t0); !ok {
		t.Fatal("another group was held back by the full one")
	}
	if ok, _ := th.Allow("solo", 4, t0); !ok {
		t.Fatal("a key outside any group was held back by a group")
	}
	if ok, _ := th.AllowIn("ended", 5, "id-99", 4, t0.Add(59*time.Second)); ok {
		t.Fatal("the group let a line through before its interval was over")
	}
	ok, held := th.AllowIn("ended", 5, "id-99", 4, t0.Add(time.Minute))
	if !ok || held != 96 {
		t.Fatalf("the next interval: %v, held %d; want a line saying 96 were held back", ok, held)
	}
}

// TestGroupHeldLinesAreCounted: the lines a group held back under keys
// that never come again (a worker id or address made up for each line) are
// counted, and the group's next line let through says how many. They were
// counted under their keys alone: a flood under new keys showed as its
// first lines, each saying none was held back.
func TestGroupHeldLinesAreCounted(t *testing.T) {
	th := New(time.Minute, 1024)
	for i := range 100 {
		th.AllowIn("ended", 5, "id-"+strconv.Itoa(i), 4, t0)
	}
	ok, held := th.AllowIn("ended", 5, "id-new", 4, t0.Add(time.Minute))
	if !ok || held != 95 {
		t.Fatalf("a minute after 100 lines under new keys, 5 let through: %v, held %d; want a line saying 95 were held back", ok, held)
	}
	if _, held := th.AllowIn("ended", 5, "id-newer", 4, t0.Add(time.Minute)); held != 0 {
		t.Fatalf("the count was said twice: held %d", held)
	}
}

// TestEachKeysFirstLineOutsideTheGroup: with AllowEach, the first line of
// a key per interval is let through though floods of other keys used up
// the group's burst; its further lines are held back by the group, and
// counted.
func TestEachKeysFirstLineOutsideTheGroup(t *testing.T) {
	th := New(time.Minute, 64)
	var got []bool
	for _, k := range []string{"a", "a", "a", "b", "b", "b", "c", "c"} {
		ok, _ := th.AllowEach("failed", 4, k, 2, t0)
		got = append(got, ok)
	}
	if want := []bool{true, true, false, true, true, false, true, false}; !slices.Equal(got, want) {
		t.Fatalf("allowed %v, want %v: c's first line let through, its second held back by the group", got, want)
	}
	// a's own held line, b's, and c's second, held back by the group.
	if ok, held := th.AllowEach("failed", 4, "a", 2, t0.Add(time.Minute)); !ok || held != 2 {
		t.Fatalf("the next interval: %v, held %d; want a's held line and the group's", ok, held)
	}
	if _, held := th.AllowEach("failed", 4, "b", 2, t0.Add(time.Minute)); held != 1 {
		t.Fatalf("b's next line: held %d, want its own 1", held)
	}
}
