// Package outbox holds finished scan reports until the Dragonfly API has
// accepted them. It is a bounded FIFO with retry times, optionally backed by a
// bbolt file so reports survive a coordinator crash.
//
// A report is keyed by its release (name, version). When the API re-leases a
// release whose report is still waiting, Supersede moves the report to the new
// lease identity, so it is sent under the lease that stands.
package outbox

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/broadcast"
	bolt "go.etcd.io/bbolt"
)

// Report is one job's report as the API receives it.
type Report struct {
	Name         string   `json:"name"`
	Version      string   `json:"version"`
	Attempt      *int     `json:"attempt,omitempty"`
	AssignmentID *string  `json:"assignment_id,omitempty"`
	Success      *Success `json:"success,omitempty"`
	Reason       string   `json:"reason,omitempty"`
}

// Success is a successful scan's result.
type Success struct {
	Score        int64    `json:"score"`
	InspectorURL *string  `json:"inspector_url"`
	RulesMatched []string `json:"rules_matched"`
	Commit       string   `json:"commit"`
}

// Key identifies the release a report is for.
func (r *Report) Key() string { return r.Name + "\x00" + r.Version }

// Entry is a report waiting in the outbox.
type Entry struct {
	Report Report `json:"report"`
	// LeasedAt is when the lease the report is for began.
	LeasedAt time.Time `json:"leased_at"`
	// Enqueued is when the report entered the outbox.
	Enqueued time.Time `json:"enqueued"`
	// Tries counts send attempts that failed with a retryable error.
	Tries int `json:"tries"`
	// NotBefore delays the next send (backoff).
	NotBefore time.Time `json:"not_before"`
	// Gen changes whenever Supersede updates the lease identity.
	Gen int `json:"gen"`
}

// Config bounds an Outbox.
type Config struct {
	// Capacity is the number of reports above which Full reports true (the
	// loader stops leasing). Reports are never dropped for lack of room.
	// Default 1000.
	Capacity int
	// Path is a bbolt file that keeps the reports across restarts
	// (DRAGONFLY_OUTBOX_PATH). Empty: memory only.
	Path string
}

// Outbox is safe for concurrent use.
type Outbox struct {
	cfg     Config
	db      *bolt.DB
	mu      sync.Mutex
	entries map[string]*Entry
	order   []string // FIFO of keys; may hold keys already removed
	busy    map[string]bool
	changed broadcast.Signal
}

var bucket = []byte("reports")

// Open opens the outbox, loading reports kept from an earlier run.
func Open(cfg Config) (*Outbox, error) {
	if cfg.Capacity <= 0 {
		cfg.Capacity = 1000
	}
	o := &Outbox{cfg: cfg, entries: map[string]*Entry{}, busy: map[string]bool{}}
	if cfg.Path == "" {
		return o, nil
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("outbox %s: %w", cfg.Path, err)
	}
	o.db = db
	var loaded []*Entry
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("record %q: %w", k, err)
			}
			loaded = append(loaded, &e)
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox %s: %w", cfg.Path, err)
	}
	// Oldest first.
	for _, e := range sortByEnqueued(loaded) {
		e.NotBefore = time.Time{}
		o.entries[e.Report.Key()] = e
		o.order = append(o.order, e.Report.Key())
	}
	return o, nil
}

func sortByEnqueued(es []*Entry) []*Entry {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].Enqueued.Before(es[j-1].Enqueued); j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
	return es
}

// Close closes the backing file.
func (o *Outbox) Close() error {
	if o.db == nil {
		return nil
	}
	return o.db.Close()
}

// Changed returns a channel closed at the next change: a report added,
// removed or put back. Take it before checking the state.
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

// Put adds a report. It is written to the backing file before Put returns.
// A report for a release already waiting replaces it.
func (o *Outbox) Put(e Entry) error {
	key := e.Report.Key()
	if err := o.persist(key, &e); err != nil {
		return err
	}
	o.mu.Lock()
	if _, ok := o.entries[key]; !ok {
		o.order = append(o.order, key)
	}
	o.entries[key] = &e
	o.mu.Unlock()
	o.signal()
	return nil
}

// Supersede moves a waiting report to a new lease identity. It reports
// whether a report was waiting.
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
	cp := *e
	o.mu.Unlock()
	o.signal()
	return true, o.persist(key, &cp)
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
	for _, key := range o.order {
		e, live := o.entries[key]
		if !live {
			continue
		}
		kept = append(kept, key)
		if ok || o.busy[key] || now.Before(e.NotBefore) {
			continue
		}
		o.busy[key] = true
		found, ok = *e, true
	}
	// Drop removed keys from the FIFO.
	for i := len(kept); i < len(o.order); i++ {
		o.order[i] = ""
	}
	o.order = kept
	return found, ok
}

// NextDue is the earliest time a report not being sent becomes due (zero when
// none waits).
func (o *Outbox) NextDue() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	var t time.Time
	for key, e := range o.entries {
		if o.busy[key] {
			continue
		}
		if t.IsZero() || e.NotBefore.Before(t) {
			t = e.NotBefore
		}
	}
	return t
}

// Done removes a report that was sent (accepted, or refused for good),
// unless it was superseded while being sent: then it is due again and Done
// returns false.
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
	delete(o.entries, key)
	o.mu.Unlock()
	o.signal()
	return true, o.remove(key)
}

// Retry puts a report back to be sent again at notBefore.
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
	cp := *cur
	o.mu.Unlock()
	o.signal()
	return o.persist(key, &cp)
}

// Release puts a report back without counting a try (shutdown interrupted it).
func (o *Outbox) Release(e Entry) {
	o.mu.Lock()
	delete(o.busy, e.Report.Key())
	o.mu.Unlock()
	o.signal()
}

func (o *Outbox) persist(key string, e *Entry) error {
	if o.db == nil {
		return nil
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	// Batch coalesces concurrent writers into one transaction (one fsync).
	err = o.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(key), data) })
	if err != nil {
		return fmt.Errorf("outbox write: %w", err)
	}
	return nil
}

func (o *Outbox) remove(key string) error {
	if o.db == nil {
		return nil
	}
	err := o.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(key)) })
	if err != nil {
		return fmt.Errorf("outbox delete: %w", err)
	}
	return nil
}
