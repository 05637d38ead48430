package outbox

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// makeFile writes n reports, with reasons of reasonLen bytes, to a new file
// and returns them by key as a reopen sees them.
func makeFile(t *testing.T, path string, n, reasonLen int) map[string]Entry {
	t.Helper()
	o := mustOpen(t, Config{Path: path})
	want := map[string]Entry{}
	for i := range n {
		e := Entry{
			Report: Report{Name: "pkg" + strconv.Itoa(i), Version: "1.0", Attempt: intp(1), AssignmentID: strp("as" + strconv.Itoa(i)),
				Reason: strings.Repeat(string(rune('a'+i%26)), reasonLen)},
			// Leased before t0, the clock of the Opens that read them back
			// (a lease later than the clock is dated from Open).
			LeasedAt: t0.Add(-time.Duration(i) * time.Second), Enqueued: t0.Add(time.Duration(i) * time.Second),
		}
		if i%3 == 0 {
			e.Report.Reason = ""
			e.Report.Success = &Success{Score: int64(i), RulesMatched: []string{"r" + strconv.Itoa(i)}, Commit: "c"}
		}
		if err := o.Put(e); err != nil {
			t.Fatal(err)
		}
		want[e.Report.Key()] = e
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

// raw runs fn in a write transaction on the file, behind the outbox's back.
func raw(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestUnreadableRecordsMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	want := makeFile(t, path, 3, 10)
	bad := map[string][]byte{
		"bad\x00json":     []byte(`{"report":`),
		"noname\x001":     []byte(`{"report":{"name":"","version":"1","reason":"x"}}`),
		"x\x001":          []byte(`{"report":{"name":"y","version":"1","reason":"x"}}`),
		"both\x001":       []byte(`{"report":{"name":"both","version":"1","reason":"x","success":{"score":1,"commit":"c"}}}`),
		"neither\x001":    []byte(`{"report":{"name":"neither","version":"1"}}`),
		"notjson\x00\xff": {0xff, 0xfe, 0x00},
	}
	raw(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReports)
		for k, v := range bad {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		_, err := b.CreateBucket([]byte("nested"))
		return err
	})

	o := mustOpen(t, Config{Path: path})
	r := o.Recovery()
	if r.Corrupt() || r.Unreadable != len(bad)+1 || r.UnreadableKept != len(bad) || r.MoveError != "" || len(r.UnreadableRecords) != len(bad)+1 {
		t.Fatalf("recovery = %+v", r)
	}
	causes := map[string]string{}
	for _, u := range r.UnreadableRecords {
		causes[u.Key] = u.Cause
	}
	for key, want := range map[string]string{
		`"bad\x00json"`:     "does not decode",
		`"noname\x001"`:     "no name or version",
		`"x\x001"`:          `key does not match its report "y\x001"`,
		`"both\x001"`:       "neither or both",
		`"neither\x001"`:    "neither or both",
		`"notjson\x00\xff"`: "does not decode",
		`"nested"`:          "a bucket, not a record",
	} {
		if !strings.Contains(causes[key], want) {
			t.Errorf("record %s: cause %q, want it to say %q", key, causes[key], want)
		}
	}
	got := map[string]Entry{}
	for {
		e, ok := o.Next(t0.Add(time.Hour))
		if !ok {
			break
		}
		got[e.Report.Key()] = e
	}
	sameEntries(t, "delivered", got, want)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	// Kept byte for byte for an operator, out of the reports.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		u := tx.Bucket(bucketUnreadable)
		for k, v := range bad {
			if got := u.Get([]byte(k)); !bytes.Equal(got, v) {
				t.Errorf("unreadable %q kept as %q, want %q", k, got, v)
			}
			if tx.Bucket(bucketReports).Get([]byte(k)) != nil {
				t.Errorf("unreadable %q still among the reports", k)
			}
		}
		return nil
	})
	db.Close()

	// The next Open finds them moved (the nested bucket stays and is
	// listed again).
	o = mustOpen(t, Config{Path: path})
	defer o.Close()
	if r := o.Recovery(); r.Unreadable != 1 || r.UnreadableKept != len(bad) || o.Len() != len(want) {
		t.Fatalf("second open: recovery %+v, len %d", r, o.Len())
	}
}

func TestUnreadableListBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	makeFile(t, path, 1, 10)
	long := strings.Repeat("k", 20000)
	raw(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReports)
		for i := range 40 {
			if err := b.Put([]byte(long+strconv.Itoa(i)), []byte(strings.Repeat("{", 5000))); err != nil {
				return err
			}
		}
		return nil
	})
	o := mustOpen(t, Config{Path: path})
	defer o.Close()
	r := o.Recovery()
	if r.Unreadable != 40 || len(r.UnreadableRecords) != MaxListed || r.UnreadableKept != 40 || o.Len() != 1 {
		t.Fatalf("recovery: %d unreadable, %d listed, %d kept; len %d", r.Unreadable, len(r.UnreadableRecords), r.UnreadableKept, o.Len())
	}
	for _, u := range r.UnreadableRecords {
		if len(u.Key) > maxKeyText || len(u.Cause) > maxText || !strings.Contains(u.Key, "…[cut ") {
			t.Fatalf("listed record not bounded: key %d bytes, cause %d bytes", len(u.Key), len(u.Cause))
		}
	}
}

// hwm is the size the file's meta page claims (its pages in use).
func hwm(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// checkMovedAside checks that o started on a fresh file after moving the
// corrupt one, whose bytes were orig, aside.
func checkMovedAside(t *testing.T, o *Outbox, path string, orig []byte, cause string) {
	t.Helper()
	r := o.Recovery()
	if want := path + ".corrupt-20260101T000000Z"; r.CorruptPath != want {
		t.Fatalf("corrupt file moved to %q, want %q (recovery %+v)", r.CorruptPath, want, r)
	}
	if !strings.Contains(r.CorruptCause, cause) || len(r.CorruptCause) > maxText {
		t.Errorf("cause %q, want it to say %q", r.CorruptCause, cause)
	}
	kept, err := os.ReadFile(r.CorruptPath)
	if err != nil || !bytes.Equal(kept, orig) {
		t.Errorf("corrupt file not kept as it was: %v", err)
	}
}

func TestCorruptFileMovedAside(t *testing.T) {
	// cutAt makes a file of five reports and cuts it to size bytes.
	cutAt := func(size int64) func(*testing.T, string) {
		return func(t *testing.T, path string) {
			makeFile(t, path, 5, 10)
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		make  func(t *testing.T, path string)
		cause string
	}{{
		name: "not bbolt",
		make: func(t *testing.T, path string) {
			os.WriteFile(path, bytes.Repeat([]byte("not a database\n"), 1000), 0o600)
		},
		cause: "invalid database",
	}, {
		name:  "cut inside the second meta page",
		make:  cutAt(5000),
		cause: "file size too small",
	}, {
		name:  "cut inside the first meta page",
		make:  cutAt(100),
		cause: "invalid database",
	}, {
		name: "both meta pages garbage",
		make: func(t *testing.T, path string) {
			makeFile(t, path, 5, 10)
			overwrite(t, path, 0, randomBytes(1, 2*4096))
		},
		cause: "",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "outbox.db")
			tc.make(t, path)
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			o := mustOpen(t, Config{Path: path, Now: testkit.NewClockAt(t0).Now})
			checkMovedAside(t, o, path, orig, tc.cause)
			if o.Len() != 0 {
				t.Errorf("len = %d from a file nothing could be read from", o.Len())
			}
			// The fresh file works and is sound.
			if err := o.Put(entry("a", t0)); err != nil {
				t.Fatal(err)
			}
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			if got := deliver(t, path); len(got) != 1 {
				t.Fatalf("fresh file holds %q", keys(got))
			}
		})
	}
}

// TestCutAnywhere cuts a real file at every page boundary below the size
// its meta page claims, and inside pages: Open never fails, moves the file
// aside, and delivers only reports that were written.
func TestCutAnywhere(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base.db")
	want := makeFile(t, base, 120, 200)
	size := hwm(t, base)
	causes := map[string]int{}
	for cut := size - 4096; cut >= 2*4096; cut -= 4096 {
		for _, at := range []int64{cut, cut + 1000} {
			path := copyFile(t, base)
			if err := os.Truncate(path, at); err != nil {
				t.Fatal(err)
			}
			o, err := Open(Config{Path: path, Now: testkit.NewClockAt(t0).Now})
			if err != nil {
				t.Fatalf("cut at %d: %v", at, err)
			}
			r := o.Recovery()
			if !r.Corrupt() {
				t.Errorf("cut at %d of %d: not moved aside", at, size)
			}
			switch {
			case strings.Contains(r.CorruptCause, "truncated"):
				causes["truncated"]++
			case strings.Contains(r.CorruptCause, "panic"):
				causes["panic"]++
			default:
				causes[r.CorruptCause]++
			}
			for {
				e, ok := o.Next(t0.Add(1000 * time.Hour))
				if !ok {
					break
				}
				if !reflect.DeepEqual(e, want[e.Report.Key()]) {
					t.Errorf("cut at %d: delivered %s, which was never written", at, show(e))
				}
			}
			o.Close()
		}
	}
	t.Logf("file of %d bytes: causes %v", size, causes)
}

func TestZeroLengthFileIsFresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	o := mustOpen(t, Config{Path: path})
	if r := o.Recovery(); !reflect.DeepEqual(r, Recovery{}) || o.Len() != 0 {
		t.Fatalf("recovery %+v, len %d", r, o.Len())
	}
	if err := o.Put(entry("a", t0)); err != nil {
		t.Fatal(err)
	}
	o.Close()
	if got := deliver(t, path); len(got) != 1 {
		t.Fatalf("file holds %q", keys(got))
	}
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// pages lists the file's pages in use by type.
func pages(t *testing.T, path string) map[string][]int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m := map[string][]int{}
	db.View(func(tx *bolt.Tx) error {
		for id := 0; ; id++ {
			p, err := tx.Page(id)
			if err != nil {
				t.Fatal(err)
			}
			if p == nil {
				return nil
			}
			m[p.Type] = append(m[p.Type], id)
			id += p.OverflowCount
		}
	})
	return m
}

// TestGarbageInEveryPage writes random bytes over each page of a real file
// in turn (all of it, its first element headers, or its middle) and opens
// it. Whatever the damage, Open neither fails nor crashes, every report it
// delivers is one that was written, intact, and a report is missing only
// when Recovery says something was wrong.
func TestGarbageInEveryPage(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base.db")
	want := makeFile(t, base, 120, 200)
	const pageSize = 4096
	n := hwm(t, base) / pageSize
	if n < 10 {
		t.Fatalf("base file has %d pages; want more for this test to mean something", n)
	}
	last := "pkg119\x001.0"
	if _, ok := want[last]; !ok {
		t.Fatal("the last report written is not " + last)
	}
	outcomes := map[string]int{}
	for page := range n {
		for _, v := range []struct {
			name     string
			off, len int64
		}{{"whole", 0, pageSize}, {"headers", 16, 64}, {"middle", pageSize / 2, 64}} {
			path := copyFile(t, base)
			overwrite(t, path, page*pageSize+v.off, randomBytes(uint64(page)*3+uint64(len(v.name)), int(v.len)))
			o, err := Open(Config{Path: path, Now: testkit.NewClockAt(t0).Now})
			if err != nil {
				t.Fatalf("page %d, %s: open: %v", page, v.name, err)
			}
			r := o.Recovery()
			got := map[string]Entry{}
			for {
				e, ok := o.Next(t0.Add(1000 * time.Hour))
				if !ok {
					break
				}
				got[e.Report.Key()] = e
			}
			for k, e := range got {
				if w, ok := want[k]; !ok || !reflect.DeepEqual(e, w) {
					t.Errorf("page %d, %s: delivered %s, which was never written", page, v.name, show(e))
				}
			}
			switch {
			case r.Corrupt() && strings.Contains(r.CorruptCause, "panic"):
				outcomes["corrupt: panic"]++
			case r.Corrupt() && strings.Contains(r.CorruptCause, "consistency check"):
				outcomes["corrupt: check"]++
			case r.Corrupt():
				outcomes["corrupt: refused"]++
			case r.Unreadable > 0:
				outcomes["unreadable records"]++
			case len(got) == len(want):
				outcomes["no harm"]++
			case page < 2 && len(got) == len(want)-1 && got[last] == (Entry{}):
				// bbolt's own crash recovery: with one meta page bad it
				// uses the other, the transaction before the last (what
				// a crash during the last commit leaves).
				outcomes["previous transaction"]++
			default:
				t.Errorf("page %d, %s: %d of %d reports delivered and nothing reported", page, v.name, len(got), len(want))
			}
			if r.Corrupt() && r.Salvaged != len(got) {
				t.Errorf("page %d, %s: salvaged %d, delivered %d", page, v.name, r.Salvaged, len(got))
			}
			if err := o.Close(); err != nil {
				t.Errorf("page %d, %s: close: %v", page, v.name, err)
			}
		}
	}
	t.Logf("%d pages: %v", n, outcomes)
	if outcomes["corrupt: panic"] == 0 || outcomes["corrupt: check"]+outcomes["corrupt: refused"] == 0 {
		t.Errorf("outcomes %v: the damage never reached a panic or a refusal; the test proves too little", outcomes)
	}
}

// TestPanicWhileReadingIsCorruption: a leaf page that names another page id
// makes bbolt panic while reading; Open recovers, moves the file aside and
// keeps the reports it read before the panic.
func TestPanicWhileReadingIsCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	want := makeFile(t, path, 120, 200)
	leaves := pages(t, path)["leaf"]
	if len(leaves) < 3 {
		t.Fatalf("leaf pages %v", leaves)
	}
	victim := leaves[len(leaves)/2]
	overwrite(t, path, int64(victim)*4096, binary.LittleEndian.AppendUint64(nil, 999999))
	orig, _ := os.ReadFile(path)
	o := mustOpen(t, Config{Path: path, Now: testkit.NewClockAt(t0).Now})
	checkMovedAside(t, o, path, orig, "panic while reading")
	r := o.Recovery()
	if r.Salvaged >= len(want) || r.Salvaged != o.Len() {
		t.Errorf("salvaged %d of %d, len %d", r.Salvaged, len(want), o.Len())
	}
	if h := o.Health(); h.NotDurable != 0 || h.WriteFailing {
		t.Errorf("salvaged reports not written to the fresh file: %+v", h)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	got := deliver(t, path)
	if len(got) != r.Salvaged {
		t.Fatalf("fresh file holds %d, salvaged %d", len(got), r.Salvaged)
	}
	for k, e := range got {
		if !reflect.DeepEqual(e, want[k]) {
			t.Errorf("salvaged %s, written %s", show(e), show(want[k]))
		}
	}
}

// TestCheckFailureSalvagesReports: a freelist that lists a page in use is
// found by tx.Check (bbolt would hand that page out again and overwrite
// reports); every report still reads, so all of them move to the fresh file.
func TestCheckFailureSalvagesReports(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	want := makeFile(t, path, 120, 200)
	p := pages(t, path)
	if len(p["freelist"]) != 1 || len(p["leaf"]) == 0 {
		t.Fatalf("pages %v", p)
	}
	// Page header: id, flags (0x10: freelist), count, overflow; then ids.
	fl := binary.LittleEndian.AppendUint64(nil, uint64(p["freelist"][0]))
	fl = binary.LittleEndian.AppendUint16(fl, 0x10)
	fl = binary.LittleEndian.AppendUint16(fl, 1)
	fl = binary.LittleEndian.AppendUint32(fl, 0)
	fl = binary.LittleEndian.AppendUint64(fl, uint64(p["leaf"][0]))
	overwrite(t, path, int64(p["freelist"][0])*4096, fl)
	orig, _ := os.ReadFile(path)

	o := mustOpen(t, Config{Path: path, Now: testkit.NewClockAt(t0).Now})
	checkMovedAside(t, o, path, orig, "consistency check")
	if r := o.Recovery(); r.Salvaged != len(want) || o.Len() != len(want) {
		t.Fatalf("salvaged %d, len %d, want %d", r.Salvaged, o.Len(), len(want))
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	sameEntries(t, "fresh file", deliver(t, path), want)
}

// TestUnopenableIsAnError: a file the operating system will not hand over
// is not corrupt; Open fails and leaves it alone.
func TestUnopenableIsAnError(t *testing.T) {
	t.Run("lock held by another process", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		makeFile(t, path, 2, 10)
		orig, _ := os.ReadFile(path)
		other, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		_, err = Open(Config{Path: path, LockTimeout: 50 * time.Millisecond})
		if !errors.Is(err, berrors.ErrTimeout) {
			t.Fatalf("open = %v, want a lock timeout", err)
		}
		// bbolt says "timeout" and nothing else.
		if !strings.Contains(err.Error(), "locked by another process") {
			t.Errorf("open = %q, want it to say another process holds the lock", err)
		}
		noneMovedAside(t, path)
		if now, _ := os.ReadFile(path); !bytes.Equal(now, orig) {
			t.Error("file changed")
		}
	})
	t.Run("directory", func(t *testing.T) {
		path := t.TempDir()
		if _, err := Open(Config{Path: path}); err == nil {
			t.Fatal("opened a directory")
		}
		noneMovedAside(t, path)
	})
	t.Run("missing directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "no", "outbox.db")
		if _, err := Open(Config{Path: path}); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("open = %v", err)
		}
	})
}

func noneMovedAside(t *testing.T, path string) {
	t.Helper()
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) > 0 {
		t.Fatalf("moved aside: %v", m)
	}
}

func TestMoveAsideNamesDoNotCollide(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outbox.db")
	clk := testkit.NewClockAt(t0)
	var moved []string
	for range 3 {
		os.WriteFile(path, []byte("garbage garbage garbage"), 0o600)
		o := mustOpen(t, Config{Path: path, Now: clk.Now})
		moved = append(moved, o.Recovery().CorruptPath)
		o.Close()
	}
	want := []string{path + ".corrupt-20260101T000000Z", path + ".corrupt-20260101T000000Z-2", path + ".corrupt-20260101T000000Z-3"}
	if !reflect.DeepEqual(moved, want) {
		t.Fatalf("moved to %q, want %q", moved, want)
	}
}

// TestFlippedBitInARecord flips bits of a report's record: the report read
// back must be the one written, or none (an unreadable record, moved aside).
// bbolt checksums its meta pages only, so a flip that left valid JSON
// ("score":1 to "score":0) passed every check and sent another verdict.
// Every bit of the record through decode, and one flip in a real file.
func TestFlippedBitInARecord(t *testing.T) {
	want := Entry{
		Report: Report{Name: "evil", Version: "1.0", Attempt: intp(1), AssignmentID: strp("as1"),
			Success: &Success{Score: 1, InspectorURL: strp("https://inspector.pypi.io/project/evil/1.0/x/evil-1.0/setup.py"),
				RulesMatched: []string{"r1"}, Commit: "c0ffee"}},
		LeasedAt: t0, Enqueued: t0.Add(time.Second),
	}
	key := []byte(want.Report.Key())
	clean, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if got, why := decode(key, clean); why != "" || !reflect.DeepEqual(*got, want) {
		t.Fatalf("unflipped record: %v %q", got, why)
	}
	var wrong []string
	for i := range clean {
		for bit := range 8 {
			v := bytes.Clone(clean)
			v[i] ^= 1 << bit
			if got, why := decode(key, v); why == "" && !reflect.DeepEqual(*got, want) {
				wrong = append(wrong, fmt.Sprintf("byte %d (%q) bit %d: %s", i, clean[i], bit, brief(*got)))
			}
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d of %d one-bit flips read as another report than %s, e.g.:\n%s",
			len(wrong), 8*len(clean), brief(want), strings.Join(wrong[:min(len(wrong), 8)], "\n"))
	}

	// In a file: the score's digit.
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := mustOpen(t, Config{Path: path})
	if err := o.Put(want); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte(`"score":1,`))
	if at < 0 {
		t.Fatal("score not found in the file")
	}
	data[at+len(`"score":`)] ^= 1 // "1" to "0"
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	o = mustOpen(t, Config{Path: path})
	defer o.Close()
	if got, ok := o.Next(t0.Add(time.Hour)); ok {
		t.Errorf("after a flip of the score in the file, delivered %s", brief(got))
	}
	if r := o.Recovery(); r.Unreadable != 1 || len(r.UnreadableRecords) != 1 || !strings.Contains(r.UnreadableRecords[0].Cause, "checksum") {
		t.Errorf("recovery = %+v, want the record listed as unreadable for its checksum", r)
	}
}

// brief shows what of an entry reaches the API or decides when it is sent.
func brief(e Entry) string {
	s := show(e)
	if r := e.Report; r.Success != nil {
		url := "<nil>"
		if r.Success.InspectorURL != nil {
			url = *r.Success.InspectorURL
		}
		s += fmt.Sprintf(" score=%d rules=%q commit=%q url=%q", r.Success.Score, r.Success.RulesMatched, r.Success.Commit, url)
	} else {
		s += fmt.Sprintf(" reason=%q", r.Reason)
	}
	return s
}

// TestChecksumAcrossReleases: the checksum covers every member of a record,
// those this release does not know included, so a coordinator rolled back
// to this release reads what a later one wrote (with a member added); a
// record that lost its checksum (a flipped bit in its key) while holding a
// member the first release never wrote is refused, not read unchecked.
func TestChecksumAcrossReleases(t *testing.T) {
	want := Entry{
		Report:   Report{Name: "evil", Version: "1.0", Success: &Success{Score: 9, RulesMatched: []string{"r1"}, Commit: "c0ffee"}},
		LeasedAt: t0, Enqueued: t0.Add(time.Second),
	}
	key := []byte(want.Report.Key())
	clean, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	// A later release's record: one member more, summed with the rest.
	var members map[string]json.RawMessage
	if err := json.Unmarshal(clean, &members); err != nil {
		t.Fatal(err)
	}
	delete(members, sumKey)
	members["priority"] = json.RawMessage(`{"level": 3}`)
	later, err := json.Marshal(members) // the canonical form: sorted members
	if err != nil {
		t.Fatal(err)
	}
	members[sumKey] = json.RawMessage(fmt.Sprint(crc32.Checksum(later, castagnoli)))
	if later, err = json.Marshal(members); err != nil {
		t.Fatal(err)
	}
	if got, why := decode(key, later); why != "" || !reflect.DeepEqual(*got, want) {
		t.Fatalf("a later release's record: %v %q, want %s", got, why, brief(want))
	}
	// Its added member changed: refused.
	changed := bytes.Replace(later, []byte(`"level":3`), []byte(`"level":4`), 1)
	if bytes.Equal(changed, later) {
		t.Fatalf("no level in %s", later)
	}
	if _, why := decode(key, changed); !strings.Contains(why, "checksum") {
		t.Errorf("a changed member this release does not know: %q, want a checksum mismatch", why)
	}
	// The checksum's key damaged ("crc32c" to "crc32s"): no checksum, and a
	// member no first-release record has.
	lost := bytes.Replace(clean, []byte(`"crc32c"`), []byte(`"crc32s"`), 1)
	if bytes.Equal(lost, clean) {
		t.Fatalf("no checksum in %s", clean)
	}
	if _, why := decode(key, lost); !strings.Contains(why, "checksum") {
		t.Errorf("a record whose checksum key is damaged: %q, want it refused", why)
	}
	// A first release's record (no checksum, its members only) still reads.
	members = nil
	if err := json.Unmarshal(clean, &members); err != nil {
		t.Fatal(err)
	}
	delete(members, sumKey)
	first, err := json.Marshal(members)
	if err != nil {
		t.Fatal(err)
	}
	if got, why := decode(key, first); why != "" || !reflect.DeepEqual(*got, want) {
		t.Fatalf("a first release's record: %v %q", got, why)
	}
}
