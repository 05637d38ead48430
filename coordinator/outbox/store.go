package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	bucketReports    = []byte("reports")
	bucketUnreadable = []byte("reports-unreadable")
)

const (
	// MaxListed bounds Recovery.UnreadableRecords.
	MaxListed = 16
	// maxText bounds each error text and key kept in Health and Recovery.
	maxText = 1 << 10
	// maxKeyText bounds a key quoted in Recovery.
	maxKeyText = 256
)

// Health is the state of the outbox's writes to its file. The zero value is
// healthy (and is what a memory-only outbox always reports).
type Health struct {
	// WriteFailing is set while the last write to the file failed.
	WriteFailing bool
	// Since is when the current run of failures began (zero when healthy).
	Since time.Time
	// LastError is the last write error (at most 1 KiB; "" when healthy).
	LastError string
	// Failures counts failed write transactions since Open.
	Failures uint64
	// NotDurable counts reports held in memory only: their latest state is
	// not on disk, and a crash would lose it.
	NotDurable int
	// PendingDeletes counts reports removed in memory but still on disk: a
	// crash would bring them back, to be sent again.
	PendingDeletes int
}

// Recovery is what Open found wrong in the file and did about it. The zero
// value means nothing.
type Recovery struct {
	// CorruptPath is where a corrupt file was moved ("" when the file was
	// sound). A fresh file was started at Config.Path.
	CorruptPath string
	// CorruptCause says why the file was judged corrupt (at most 1 KiB).
	CorruptCause string
	// Salvaged counts the reports read from the corrupt file and kept: in
	// memory, and in the fresh file once written (see Health).
	Salvaged int
	// Unreadable counts records found at this Open that are not reports.
	Unreadable int
	// UnreadableRecords lists the first MaxListed of them.
	UnreadableRecords []UnreadableRecord
	// UnreadableKept counts the records in the bucket "reports-unreadable"
	// after this Open (moved by this and earlier Opens).
	UnreadableKept int
	// MoveError is why the unreadable records could not be moved aside (""
	// when they were). They were skipped and stay where they are; the next
	// Open tries again.
	MoveError string
}

// UnreadableRecord is a record that is not a report.
type UnreadableRecord struct {
	// Key is the record's key, quoted (at most 256 bytes).
	Key string
	// Cause says what is wrong with it (at most 1 KiB).
	Cause string
}

// Corrupt reports whether Open moved a corrupt file aside.
func (r Recovery) Corrupt() bool { return r.CorruptPath != "" }

func (r Recovery) clone() Recovery {
	r.UnreadableRecords = append([]UnreadableRecord(nil), r.UnreadableRecords...)
	return r
}

// Health reports the state of writes to the file.
func (o *Outbox) Health() Health {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.health
	for key := range o.dirty {
		if _, ok := o.entries[key]; ok {
			h.NotDurable++
		} else {
			h.PendingDeletes++
		}
	}
	for key := range o.unstorable {
		if _, ok := o.entries[key]; ok {
			h.NotDurable++
		}
	}
	return h
}

// Sync writes every change not on disk yet, in one transaction. While writes
// fail it tries one even when nothing is pending, to find out whether they
// work again. The coordinator calls it periodically; every other change
// does the same work.
func (o *Outbox) Sync() error {
	if o.db == nil {
		return nil
	}
	o.wmu.Lock()
	defer o.wmu.Unlock()
	return o.writeDirty()
}

// markDirty records that key's state in memory changed. The caller holds mu.
func (o *Outbox) markDirty(key string) {
	if o.db == nil {
		return
	}
	o.stamp++
	o.dirty[key] = o.stamp
	delete(o.unstorable, key)
}

// write writes what is pending and reports whether key's change, made
// before the call, is on disk.
func (o *Outbox) write(key string) error {
	if o.db == nil {
		return nil
	}
	o.wmu.Lock()
	defer o.wmu.Unlock()
	err := o.writeDirty()
	o.mu.Lock()
	_, dirty := o.dirty[key]
	why, refused := o.unstorable[key]
	o.mu.Unlock()
	switch {
	case refused:
		return fmt.Errorf("outbox write: %s", why)
	case err != nil && dirty:
		return err
	}
	return nil
}

var errClosed = errors.New("outbox closed")

// writeDirty writes the current state of every dirty key in one transaction.
// The caller holds wmu. A key changed while the transaction ran stays dirty
// (its own write follows).
func (o *Outbox) writeDirty() error {
	if o.closed {
		return errClosed
	}
	type change struct {
		key   string
		stamp uint64
		data  []byte // nil: delete
	}
	o.mu.Lock()
	if len(o.dirty) == 0 && !o.health.WriteFailing {
		o.mu.Unlock()
		return nil
	}
	changes := make([]change, 0, len(o.dirty))
	for key, stamp := range o.dirty {
		c := change{key: key, stamp: stamp}
		if e, ok := o.entries[key]; ok {
			data, err := json.Marshal(e)
			if err != nil {
				// Not reachable for an Entry; kept in memory, not retried.
				delete(o.dirty, key)
				o.unstorable[key] = clip.Error(err, maxText)
				continue
			}
			c.data = data
		}
		changes = append(changes, c)
	}
	o.mu.Unlock()

	refused := map[string]string{}
	err := o.db.Update(func(tx *bolt.Tx) error {
		clear(refused)
		b, err := tx.CreateBucketIfNotExists(bucketReports)
		if err != nil {
			return err
		}
		for _, c := range changes {
			var err error
			if c.data == nil {
				err = b.Delete([]byte(c.key))
			} else {
				err = b.Put([]byte(c.key), c.data)
			}
			if err != nil {
				// bbolt refuses a key or value it cannot store before
				// touching anything; I/O errors come at commit.
				refused[c.key] = clip.Error(err, maxText)
			}
		}
		return nil
	})

	now := o.cfg.Now()
	o.mu.Lock()
	was := o.health.WriteFailing
	if err != nil {
		o.health.Failures++
		if !was {
			o.health.WriteFailing, o.health.Since = true, now
		}
		o.health.LastError = clip.Error(err, maxText)
	} else {
		for _, c := range changes {
			if o.dirty[c.key] != c.stamp {
				continue
			}
			delete(o.dirty, c.key)
			if why, ok := refused[c.key]; ok && c.data != nil {
				o.unstorable[c.key] = why
			}
		}
		o.health.WriteFailing, o.health.Since, o.health.LastError = false, time.Time{}, ""
	}
	flipped := was != o.health.WriteFailing
	o.mu.Unlock()
	if flipped {
		o.signal()
	}
	if err != nil {
		return fmt.Errorf("outbox write: %w", err)
	}
	return nil
}

// openFile opens (or creates) the file at cfg.Path, moving a corrupt one
// aside, and returns the reports it holds. It fills o.db, o.file and
// o.recovery. Reports salvaged from a corrupt file are returned with
// salvaged set: the caller marks them dirty and writes them.
func (o *Outbox) openFile() (loaded []*Entry, salvaged bool, err error) {
	path := o.cfg.Path
	db, file, err := openBolt(path, o.cfg.LockTimeout)
	var cause error
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, false, fmt.Errorf("outbox %s: locked by another process for %s (another coordinator with the same outbox path?): %w",
				path, o.cfg.LockTimeout, err)
		}
		if !isCorrupt(err) {
			return nil, false, fmt.Errorf("outbox %s: %w", path, err)
		}
		cause = err
	}
	var rd readout
	if cause == nil {
		if rd, cause = read(db, file); cause != nil {
			// read rolled its transaction back, even after a panic.
			_ = db.Close()
		}
	}
	if cause != nil {
		moved, err := moveAside(path, o.cfg.Now())
		if err != nil {
			return nil, false, fmt.Errorf("outbox %s is corrupt (%s) and could not be moved aside: %w", path, clip.Error(cause, maxText), err)
		}
		o.recovery.CorruptPath, o.recovery.CorruptCause = moved, clip.Error(cause, maxText)
		o.recovery.Salvaged = len(rd.entries)
		if db, file, err = openBolt(path, o.cfg.LockTimeout); err != nil {
			return nil, false, fmt.Errorf("outbox %s: corrupt file moved to %s; fresh file: %w", path, moved, err)
		}
		// Unreadable records stay in the corrupt file.
		o.db, o.file = db, file
		return rd.entries, len(rd.entries) > 0, nil
	}
	o.db, o.file = db, file
	o.recovery.Unreadable = len(rd.bad)
	for _, b := range rd.bad[:min(len(rd.bad), MaxListed)] {
		o.recovery.UnreadableRecords = append(o.recovery.UnreadableRecords, UnreadableRecord{
			Key: clip.String(strconv.Quote(b.key), maxKeyText), Cause: b.cause,
		})
	}
	o.recovery.UnreadableKept = rd.unreadableKept
	if rd.movable() > 0 {
		if err := o.moveUnreadable(rd); err != nil {
			o.recovery.MoveError = clip.Error(err, maxText)
		} else {
			o.recovery.UnreadableKept += rd.movable()
		}
	}
	return rd.entries, false, nil
}

// moveUnreadable moves the unreadable records to bucketUnreadable in one
// transaction.
func (o *Outbox) moveUnreadable(rd readout) error {
	suffix := "\x00moved-" + o.cfg.Now().UTC().Format(time.RFC3339Nano)
	err := o.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketReports)
		if err != nil {
			return err
		}
		u, err := tx.CreateBucketIfNotExists(bucketUnreadable)
		if err != nil {
			return err
		}
		for _, r := range rd.bad {
			if r.bucket {
				continue
			}
			k := []byte(r.key)
			v := b.Get(k)
			to := k
			if u.Get(to) != nil {
				to = append(to[:len(to):len(to)], suffix...)
			}
			if err := u.Put(to, v); err != nil {
				return fmt.Errorf("record %s: %w", clip.String(strconv.Quote(r.key), maxKeyText), err)
			}
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox move unreadable records: %w", err)
	}
	return nil
}

// readout is what read found in a sound file.
type readout struct {
	entries        []*Entry
	bad            []badRecord
	unreadableKept int
}

type badRecord struct {
	key    string
	cause  string
	bucket bool // a nested bucket: not moved
}

func (rd readout) movable() int {
	n := 0
	for _, b := range rd.bad {
		if !b.bucket {
			n++
		}
	}
	return n
}

// read checks the file and decodes its reports. A non-nil error means the
// file is corrupt; the entries decoded before the corruption showed are
// returned with it.
func read(db *bolt.DB, file *os.File) (rd readout, corrupt error) {
	// A corrupt page can make bbolt read outside the mapping: turn the fault
	// into a panic, and the panic into an error.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	tx, err := db.Begin(false)
	if err != nil {
		return rd, err
	}
	defer func() {
		if r := recover(); r != nil {
			corrupt = fmt.Errorf("panic while reading: %s", clip.String(fmt.Sprint(r), maxText))
		}
	}()
	defer func() { _ = tx.Rollback() }()

	// A file cut short would fault on the pages past its end.
	fi, err := file.Stat()
	if err != nil {
		return rd, fmt.Errorf("stat: %w", err)
	}
	if fi.Size() < tx.Size() {
		return rd, fmt.Errorf("file is %d bytes, its meta page needs %d: truncated", fi.Size(), tx.Size())
	}
	// Decode the reports first, so a panic further on leaves as many as
	// possible to salvage.
	if b := tx.Bucket(bucketReports); b != nil {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil {
				rd.bad = append(rd.bad, badRecord{key: string(k), cause: "a bucket, not a record", bucket: true})
				continue
			}
			e, why := decode(k, v)
			if why != "" {
				rd.bad = append(rd.bad, badRecord{key: string(k), cause: why})
				continue
			}
			rd.entries = append(rd.entries, e)
		}
	}
	// Touch every key and value, here, where a fault is recovered: tx.Check
	// below reads them again in a goroutine of its own.
	sum := crc32.NewIEEE()
	err = tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		if b == nil {
			return fmt.Errorf("top-level key %s is not a bucket", clip.String(strconv.Quote(string(name)), maxKeyText))
		}
		touch(b, sum)
		return nil
	})
	if err != nil {
		return rd, err
	}
	if u := tx.Bucket(bucketUnreadable); u != nil {
		rd.unreadableKept = u.Stats().KeyN
	}
	var (
		n     int
		first []string
	)
	for err := range tx.Check() {
		n++
		if len(first) < 3 {
			first = append(first, err.Error())
		}
	}
	if n > 0 {
		return rd, fmt.Errorf("consistency check: %d errors: %s", n, strings.Join(first, "; "))
	}
	return rd, nil
}

// touch reads every byte of every key and value in b and its sub-buckets.
func touch(b *bolt.Bucket, sum io.Writer) {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		sum.Write(k)
		if v == nil {
			if sub := b.Bucket(k); sub != nil {
				touch(sub, sum)
			}
			continue
		}
		sum.Write(v)
	}
}

// decode returns the entry a record holds, or why it holds none.
func decode(k, v []byte) (*Entry, string) {
	var e Entry
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, "does not decode: " + clip.Error(err, maxText)
	}
	r := &e.Report
	switch {
	case r.Name == "" || r.Version == "":
		return nil, "no name or version"
	case (r.Success == nil) == (r.Reason == ""):
		return nil, "neither or both of success and reason"
	case r.Key() != string(k):
		return nil, "key does not match its report " + clip.String(strconv.Quote(r.Key()), maxKeyText)
	}
	return &e, ""
}

// corruptError is a panic (or memory fault) inside bbolt while opening.
type corruptError struct{ msg string }

func (e *corruptError) Error() string { return e.msg }

// openBolt opens the bbolt file at path, turning a panic into a
// corruptError. It returns bbolt's data file too.
func openBolt(path string, timeout time.Duration) (db *bolt.DB, file *os.File, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				// Releases the lock; the mapping, if any, leaks.
				_ = file.Close()
			}
			db, file = nil, nil
			err = &corruptError{msg: "panic while opening: " + clip.String(fmt.Sprint(r), maxText)}
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout: timeout,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			if err == nil {
				file = f
			}
			return f, err
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return db, file, nil
}

// isCorrupt tells a file bbolt refuses for its content from one the
// operating system refuses to hand over.
func isCorrupt(err error) bool {
	var ce *corruptError
	if errors.As(err, &ce) || errors.Is(err, berrors.ErrInvalid) ||
		errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) {
		return true
	}
	var (
		pe    *fs.PathError
		errno syscall.Errno
	)
	if errors.As(err, &pe) || errors.As(err, &errno) || errors.Is(err, berrors.ErrTimeout) {
		return false
	}
	// bbolt's other refusals of a file's content ("file size too small")
	// carry no cause from the operating system.
	return true
}

// moveAside renames a corrupt file to path.corrupt-<UTC time>[-n].
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	to := base
	for n := 2; ; n++ {
		_, err := os.Lstat(to)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return "", err
		}
		if n > 100 {
			return "", fmt.Errorf("%s: 100 names taken", base)
		}
		to = base + "-" + strconv.Itoa(n)
	}
	if err := os.Rename(path, to); err != nil {
		return "", err
	}
	// Best effort: make the rename survive a power loss.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return to, nil
}
