// Package outbox holds finished scan reports until the Dragonfly API has
// accepted them. It is a bounded FIFO with retry times, optionally backed by a
// bbolt file so reports survive a coordinator crash.
//
// A report is keyed by its release (name, version). When the API re-leases a
// release whose report is still waiting, Supersede moves the report to the new
// lease identity, so it is sent under the lease that stands.
//
// # What is durable when
//
// Without Config.Path the outbox lives in memory only. With it, every change
// (Put, Supersede, Retry, Done) is written to the file in a bbolt transaction
// (fdatasync before commit returns) before the call returns nil. Concurrent
// changes share one transaction (group commit). Next and Release write
// nothing: which reports were being sent is not kept, and after a restart every
// report is due at once.
//
// A process crash at any point leaves the file as of the last committed
// transaction:
//   - a report whose Put returned nil is in it;
//   - a report whose Done returned nil is not; one whose Done had not
//     returned may be in it and is sent again (the API answers 409, which is
//     final, and the sender drops it);
//   - a crash between Supersede's change in memory and its write leaves the
//     previous lease identity: the report is sent under it, the API refuses it
//     (409) and leases the release again once the new lease ends, so the
//     release is scanned again, not lost.
//
// Power loss is covered only as far as fdatasync is honoured by the disk.
//
// # When a write fails
//
// The change is kept in memory whatever the write does: a report Put while
// writes fail is sent like any other (Next returns it), a Done removes it from
// memory. The call returns an error saying only that the change is not on disk
// yet. The key is remembered as not durable (or, for a removal, as a delete not
// written); every later write (any change, or Sync) writes all of them in one
// transaction, and the first one that commits clears them. Health reports the
// failure (WriteFailing, Since, LastError) and how many reports exist only in
// memory (NotDurable) or are removed in memory but still on disk
// (PendingDeletes); the coordinator should stop leasing while WriteFailing is
// set, since a crash then loses what is only in memory (those releases were
// leased; the API leases them again after their lease ends). Changed fires when
// WriteFailing flips. Close with changes still unwritten returns an error
// saying how many.
//
// A report whose key or value bbolt cannot store at all (a name and version of
// more than 32 KiB together) is kept in memory only, counted in NotDurable,
// and not retried until it changes; its write error is returned by the call,
// but it does not set WriteFailing.
//
// # A bad record
//
// At Open, a record that does not decode, whose checksum does not match its
// content (record.go: bbolt checks its meta pages only, so a flipped bit in a
// record, "score":1 read as "score":0, is found only there), or that decodes
// to something that is not a report (no name or version, neither or both of
// success and reason, a key other than its report's), is moved to the bucket
// "reports-unreadable" in the same file, kept there for an operator, never
// sent, and listed in Recovery. If the move cannot be written, the record is
// skipped and stays where it is; the next Open tries again.
//
// # A corrupt file
//
// Open checks the whole file: its size against the size its meta page
// claims, a read of every key and value (a panic, or a memory fault on the
// mapping, recovered), and bbolt's tx.Check (pages referenced twice, freed
// pages in use, key order). A file bbolt refuses as invalid (bad magic,
// checksum or version, too small), that panics or faults while being opened
// or read, or that fails a check, is corrupt: Open renames it to
// "<path>.corrupt-<UTC time>" (with "-2", "-3", ... if taken), starts a fresh
// file at path, writes into it the reports it could read from the corrupt one
// (Recovery.Salvaged; unreadable records stay behind), and says so in
// Recovery. The coordinator should log that at ERROR and count it. A panic
// inside bbolt's Open leaks that file's memory mapping (once per Open).
//
// A file that cannot be opened for any other reason (permission denied, the
// lock held by another process beyond Config.LockTimeout, a directory, an
// I/O error the operating system reports) is an error from Open: the outbox
// never silently starts on a fresh file then.
//
// Two cases are not reported, because bbolt cannot tell them from a normal
// crash: a zero-length file is a fresh file (a process killed before it wrote
// anything leaves one), and with one of the two meta pages damaged bbolt uses
// the other, which describes the transaction before the last (a crash in the
// middle of the last commit leaves the same), so the last change written may
// be missing.
package outbox

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/internal/broadcast"
	bolt "go.etcd.io/bbolt"
)

// Report is one job's report: the API client's type, sent as it is. The
// outbox converts it at one boundary only, its file (record.go), whose format
// is that of the first release.
type Report = mainframe.Report

// Success is a successful scan's result (mainframe.Success).
type Success = mainframe.Success

// Entry is a report waiting in the outbox.
type Entry struct {
	Report Report
	// LeasedAt is when the lease the report is for began.
	LeasedAt time.Time
	// Enqueued is when the report entered the outbox.
	Enqueued time.Time
	// Tries counts send attempts that failed with a retryable error.
	Tries int
	// NotBefore delays the next send (backoff).
	NotBefore time.Time
	// Gen changes whenever Supersede updates the lease identity (or Put
	// replaces a waiting report).
	Gen int
}

// DefaultCapacity is Config.Capacity's default (DRAGONFLY_OUTBOX_SIZE).
const DefaultCapacity = 1000

// Config bounds an Outbox.
type Config struct {
	// Capacity is the number of reports above which Full reports true (the
	// loader stops leasing). Reports are never dropped for lack of room.
	// Default 1000.
	Capacity int
	// Path is a bbolt file that keeps the reports across restarts
	// (DRAGONFLY_OUTBOX_PATH). Empty: memory only.
	Path string
	// LockTimeout bounds the wait for the file's lock while another process
	// (another coordinator) holds it; Open then fails. Default 5 s.
	LockTimeout time.Duration
	// Now is the clock for Health.Since, for the name a corrupt file is
	// moved to, and for Open, which moves a lease start read back from
	// the file and later than Now to Now (see Open). Default time.Now.
	Now func() time.Time
}

// Outbox is safe for concurrent use.
type Outbox struct {
	cfg      Config
	recovery Recovery
	changed  broadcast.Signal

	// db is nil without a Path. file is bbolt's data file (tests make its
	// writes fail through it).
	db   *bolt.DB
	file *os.File

	// wmu serializes writes to db; held across a transaction, taken before mu.
	wmu    sync.Mutex
	closed bool // under wmu

	mu      sync.Mutex
	entries map[string]*Entry
	pos     map[string]uint64 // each entry's place in the FIFO
	order   []slot            // FIFO; may hold slots of removed or replaced entries
	nextPos uint64
	busy    map[string]bool
	// dirty holds the keys whose state in memory (an entry, or its absence)
	// is not on disk yet, with the stamp of their latest change.
	dirty map[string]uint64
	stamp uint64
	// unstorable holds the keys bbolt refused to store, with why.
	unstorable map[string]string
	health     Health
}

type slot struct {
	key string
	pos uint64
}

// Open opens the outbox, loading reports kept from an earlier run. What it
// found wrong in the file and did about it is in Recovery. Every report
// loaded is due at once; a report whose lease began, as the file has it,
// after Now (its time written by a wall clock ahead of this one: stepped
// back since, or another host's) is dated from Now, in the file too, so
// that its age counts from no later than the restart.
func Open(cfg Config) (*Outbox, error) {
	if cfg.Capacity <= 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	o := &Outbox{
		cfg:        cfg,
		entries:    map[string]*Entry{},
		pos:        map[string]uint64{},
		busy:       map[string]bool{},
		dirty:      map[string]uint64{},
		unstorable: map[string]string{},
	}
	if cfg.Path == "" {
		return o, nil
	}
	loaded, salvaged, err := o.openFile()
	if err != nil {
		return nil, err
	}
	// Oldest first; ties in key order (the order bbolt keeps them in).
	slices.SortStableFunc(loaded, func(a, b *Entry) int { return a.Enqueued.Compare(b.Enqueued) })
	now := cfg.Now()
	rewrite := salvaged
	for _, e := range loaded {
		e.NotBefore = time.Time{}
		key := e.Report.Key()
		o.add(key, e)
		if e.LeasedAt.After(now) {
			// Written by a wall clock ahead of this one (stepped back
			// since, or another host's): a lease cannot begin after now.
			// Kept, the report's age stayed negative for the step, and a
			// report the API kept refusing was retried that much past
			// the report max age.
			e.LeasedAt = now
			o.markDirty(key)
			rewrite = true
		} else if salvaged {
			o.markDirty(key)
		}
	}
	if rewrite {
		// A failure shows in Health; Sync tries again.
		_ = o.Sync()
	}
	return o, nil
}

// Recovery reports what Open found wrong in the file and did about it. The
// zero value means nothing.
func (o *Outbox) Recovery() Recovery { return o.recovery.clone() }

// Close writes what is not on disk yet (one try) and closes the file. It
// returns an error if changes remain unwritten; they are lost with the
// process.
func (o *Outbox) Close() error {
	if o.db == nil {
		return nil
	}
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if o.closed {
		return nil
	}
	var unwritten error
	if err := o.writeDirty(); err != nil {
		h := o.Health()
		unwritten = fmt.Errorf("outbox closed with %d reports not on disk and %d deletes not written: %w",
			h.NotDurable, h.PendingDeletes, err)
	} else if h := o.Health(); h.NotDurable > 0 {
		unwritten = fmt.Errorf("outbox closed with %d reports bbolt cannot store, kept in memory only", h.NotDurable)
	}
	o.closed = true
	if err := o.db.Close(); err != nil {
		return fmt.Errorf("outbox close: %w", err)
	}
	return unwritten
}

// Changed returns a channel closed at the next change: a report added,
// removed or put back, or writes starting or ceasing to fail. Take it before
// checking the state.
func (o *Outbox) Changed() <-chan struct{} { return o.changed.Wait() }

func (o *Outbox) signal() { o.changed.Notify() }

// Len is the number of reports waiting.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.entries)
}

// Full reports whether the outbox holds Capacity reports or more.
func (o *Outbox) Full() bool { return o.Len() >= o.cfg.Capacity }

// Has reports whether a report for the release is waiting.
func (o *Outbox) Has(name, version string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.entries[(&Report{Name: name, Version: version}).Key()]
	return ok
}

// Put adds a report. It is in memory (Next returns it) whatever the write
// does; a nil error means it is also on disk. A non-nil error means only that
// it is not on disk yet: Health counts it, and the next write that succeeds
// (Sync, or any change) writes it. A report for a release already waiting
// replaces it, keeping its place in the FIFO and bumping Gen (so a send of the
// replaced report in flight does not remove the new one).
func (o *Outbox) Put(e Entry) error {
	key := e.Report.Key()
	o.mu.Lock()
	if cur, ok := o.entries[key]; ok {
		e.Gen = cur.Gen + 1
		o.entries[key] = &e
	} else {
		o.add(key, &e)
	}
	o.markDirty(key)
	o.mu.Unlock()
	o.signal()
	return o.write(key)
}

// add appends an entry to the FIFO. The caller holds mu (or owns o).
func (o *Outbox) add(key string, e *Entry) {
	o.nextPos++
	o.entries[key] = e
	o.pos[key] = o.nextPos
	o.order = append(o.order, slot{key: key, pos: o.nextPos})
}

// Supersede moves a waiting report to a new lease identity. It reports
// whether a report was waiting; the error, as Put's, says only that the change
// is not on disk yet.
func (o *Outbox) Supersede(name, version string, attempt *int, assignmentID *string, leasedAt time.Time) (bool, error) {
	key := (&Report{Name: name, Version: version}).Key()
	o.mu.Lock()
	e, ok := o.entries[key]
	if !ok {
		o.mu.Unlock()
		return false, nil
	}
	e.Report.Attempt, e.Report.AssignmentID, e.LeasedAt = attempt, assignmentID, leasedAt
	e.Gen++
	e.NotBefore = time.Time{}
	o.markDirty(key)
	o.mu.Unlock()
	o.signal()
	return true, o.write(key)
}

// Next takes the oldest report that is due at now and not being sent. It
// returns false when none is due; wait on Changed or until NextDue.
func (o *Outbox) Next(now time.Time) (Entry, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	kept := o.order[:0]
	var (
		found Entry
		ok    bool
	)
	for _, s := range o.order {
		e, live := o.entries[s.key]
		if !live || o.pos[s.key] != s.pos {
			continue
		}
		kept = append(kept, s)
		if ok || o.busy[s.key] || now.Before(e.NotBefore) {
			continue
		}
		o.busy[s.key] = true
		found, ok = *e, true
	}
	// Drop stale slots from the FIFO.
	clear(o.order[len(kept):])
	o.order = kept
	return found, ok
}

// NextDue is the earliest time a report not being sent becomes due, and
// false when none waits. A report due at once (a zero NotBefore) gives the
// zero time and true: zero is a time here, not "none".
func (o *Outbox) NextDue() (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var (
		t  time.Time
		ok bool
	)
	for key, e := range o.entries {
		if o.busy[key] {
			continue
		}
		if !ok || e.NotBefore.Before(t) {
			t, ok = e.NotBefore, true
		}
	}
	return t, ok
}

// DueNow makes every report waiting for a retry due at once, and returns
// how many were waiting: the shutdown flush gives each one more try (one
// whose backoff ended after the flush was never tried, and an outbox in
// memory lost it). Only in memory: a reopened outbox makes them due anyway.
func (o *Outbox) DueNow() int {
	o.mu.Lock()
	n := 0
	for key, e := range o.entries {
		if !o.busy[key] && !e.NotBefore.IsZero() {
			e.NotBefore = time.Time{}
			n++
		}
	}
	o.mu.Unlock()
	if n > 0 {
		o.signal()
	}
	return n
}

// Done removes a report that was sent (accepted, or refused for good),
// unless it was superseded while being sent: then it is due again and Done
// returns false. The error, as Put's, says only that the removal is not on
// disk yet (a crash then brings the report back, and it is sent again).
func (o *Outbox) Done(e Entry) (bool, error) {
	key := e.Report.Key()
	o.mu.Lock()
	delete(o.busy, key)
	cur, ok := o.entries[key]
	if ok && cur.Gen != e.Gen {
		o.mu.Unlock()
		o.signal()
		return false, nil
	}
	if !ok {
		o.mu.Unlock()
		o.signal()
		return true, nil
	}
	delete(o.entries, key)
	delete(o.pos, key)
	o.markDirty(key)
	o.mu.Unlock()
	o.signal()
	return true, o.write(key)
}

// Retry puts a report back to be sent again at notBefore. The error, as
// Put's, says only that the change is not on disk yet.
func (o *Outbox) Retry(e Entry, notBefore time.Time) error {
	key := e.Report.Key()
	o.mu.Lock()
	delete(o.busy, key)
	cur, ok := o.entries[key]
	if !ok {
		o.mu.Unlock()
		return nil
	}
	cur.Tries++
	if cur.Gen == e.Gen {
		cur.NotBefore = notBefore
	}
	o.markDirty(key)
	o.mu.Unlock()
	o.signal()
	return o.write(key)
}

// Release puts a report back without counting a try (shutdown interrupted it).
func (o *Outbox) Release(e Entry) {
	o.mu.Lock()
	delete(o.busy, e.Report.Key())
	o.mu.Unlock()
	o.signal()
}
