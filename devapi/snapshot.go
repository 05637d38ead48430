package devapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// snapshotVersion is the format of the snapshot file.
const snapshotVersion = 1

type snapshotFile struct {
	Version  int           `json:"version"`
	SavedAt  time.Time     `json:"saved_at"`
	Counters snapCounters  `json:"counters"`
	Releases []snapRelease `json:"releases"`
}

type snapCounters struct {
	Leases       int64 `json:"leases"`
	DeadLettered int64 `json:"dead_lettered"`
	Finished     int64 `json:"finished"`
	Failed       int64 `json:"failed"`
}

type snapRelease struct {
	Name    string     `json:"name"`
	Version string     `json:"version"`
	Files   []snapDist `json:"files"`
	Scans   []snapScan `json:"scans"`
}

// snapDist names a distribution; only files added at runtime (Add) carry
// their bytes, the others come from the configuration again.
type snapDist struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int    `json:"size"`
	Data   []byte `json:"data,omitempty"`
}

type snapScan struct {
	ID           string `json:"id"`
	Seq          uint64 `json:"seq"`
	Status       string `json:"status"`
	Attempt      int    `json:"attempt"`
	AssignmentID string `json:"assignment_id,omitempty"`
	// Owner is the identity holding the lease. Snapshots written before
	// owners were kept have none: their leases belong to "" (the identity
	// without authentication).
	Owner        string     `json:"owner,omitempty"`
	QueuedAt     time.Time  `json:"queued_at"`
	PendingAt    *time.Time `json:"pending_at,omitempty"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
	DeadLettered bool       `json:"dead_lettered,omitempty"`
	Score        int        `json:"score,omitempty"`
	InspectorURL *string    `json:"inspector_url,omitempty"`
	Rules        []string   `json:"rules,omitempty"`
	Commit       string     `json:"commit,omitempty"`
	Reason       string     `json:"reason,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func fromOpt(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// snapshotLocked copies the state into its snapshot form; s.mu is held.
func (s *Server) snapshotLocked() *snapshotFile {
	st := s.st
	out := &snapshotFile{
		Version: snapshotVersion,
		SavedAt: s.now().UTC(),
		Counters: snapCounters{
			Leases: st.count.leases, DeadLettered: st.count.deadLettered,
			Finished: st.count.finished, Failed: st.count.failed,
		},
		Releases: make([]snapRelease, 0, len(st.order)),
	}
	for _, r := range st.order {
		sr := snapRelease{Name: r.name, Version: r.version, Files: make([]snapDist, len(r.files)), Scans: make([]snapScan, len(r.scans))}
		for i, f := range r.files {
			sr.Files[i] = snapDist{Name: f.name, SHA256: f.sha, Size: len(f.data)}
			if f.added {
				sr.Files[i].Data = f.data
			}
		}
		for i, sc := range r.scans {
			sr.Scans[i] = snapScan{
				ID: sc.id, Seq: sc.seq, Status: sc.status.String(), Attempt: sc.attempt,
				AssignmentID: sc.assignment, Owner: sc.owner, QueuedAt: sc.queuedAt, PendingAt: optTime(sc.pendingAt),
				FinishedAt: optTime(sc.finishedAt), DeadLettered: sc.deadLettered, Score: sc.score,
				InspectorURL: sc.inspectorURL, Rules: sc.rules, Commit: sc.commit, Reason: sc.reason,
			}
		}
		out.Releases = append(out.Releases, sr)
	}
	return out
}

// writeSnapshot writes the state to SnapshotPath atomically: a temporary
// file in the same directory, synced, then renamed over the old one.
func (s *Server) writeSnapshot() error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.mu.Lock()
	snap := s.snapshotLocked()
	s.mu.Unlock()
	data, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("devapi: encode snapshot: %w", err)
	}
	path := s.cfg.SnapshotPath
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("devapi: write snapshot: %w", err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("devapi: write snapshot: %w", err)
	}
	return nil
}

// snapshotLoop writes the snapshot at most once per SnapshotInterval after
// a change, until Close.
func (s *Server) snapshotLoop() {
	defer close(s.snapDone)
	for {
		select {
		case <-s.snapStop:
			return
		case <-s.snapKick:
		}
		t := time.NewTimer(s.cfg.SnapshotInterval)
		select {
		case <-s.snapStop:
			t.Stop()
			return
		case <-t.C:
		}
		if err := s.writeSnapshot(); err != nil {
			s.log.Error("devapi: snapshot", "err", err)
		}
		if s.onSnap != nil {
			s.onSnap()
		}
	}
}

// SnapshotError reports a snapshot file New cannot use.
type SnapshotError struct {
	Path   string
	Reason string
}

func (e *SnapshotError) Error() string { return fmt.Sprintf("snapshot %s: %s", e.Path, e.Reason) }

// loadSnapshot restores releases, scans and counters from path, if it
// exists. Distributions are matched to the configured ones by file name and
// sha256; runtime-added ones come with their bytes. A configured file the
// snapshot's release lacks is added by New afterwards; a snapshot file that
// is neither configured nor carries its bytes is dropped with a warning.
func (s *Server) loadSnapshot(path string, groups []group) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	var snap snapshotFile
	if err := json.Unmarshal(data, &snap); err != nil {
		return &SnapshotError{Path: path, Reason: "not valid JSON: " + err.Error()}
	}
	if snap.Version != snapshotVersion {
		return &SnapshotError{Path: path, Reason: fmt.Sprintf("format version %d, want %d", snap.Version, snapshotVersion)}
	}
	configured := map[string]*dist{}
	for _, g := range groups {
		for _, f := range g.files {
			configured[f.name+"\x00"+f.sha] = f
		}
	}
	st := s.st
	var queued, pending []*scan
	for _, sr := range snap.Releases {
		key := releaseKey(sr.Name, sr.Version)
		if st.releases[key] != nil {
			return &SnapshotError{Path: path, Reason: fmt.Sprintf("release %s@%s listed twice", sr.Name, sr.Version)}
		}
		r := &release{key: key, name: sr.Name, version: sr.Version}
		for _, sf := range sr.Files {
			if d := configured[sf.Name+"\x00"+sf.SHA256]; d != nil {
				r.files = append(r.files, d)
				continue
			}
			if sf.Data != nil {
				sum := sha256.Sum256(sf.Data)
				if hex.EncodeToString(sum[:]) != sf.SHA256 {
					return &SnapshotError{Path: path, Reason: fmt.Sprintf("file %s: content does not match its sha256", sf.Name)}
				}
				r.files = append(r.files, s.newDist(sf.Name, sf.Data, true))
				continue
			}
			s.log.Warn("devapi: snapshot file no longer configured, dropped", "release", sr.Name+"@"+sr.Version, "file", sf.Name)
		}
		for _, ss := range sr.Scans {
			stt, err := parseStatus(ss.Status)
			if err != nil {
				return &SnapshotError{Path: path, Reason: err.Error()}
			}
			sc := &scan{
				id: ss.ID, seq: ss.Seq, rel: r, status: stt, attempt: ss.Attempt, assignment: ss.AssignmentID, owner: ss.Owner,
				queuedAt: ss.QueuedAt, pendingAt: fromOpt(ss.PendingAt), finishedAt: fromOpt(ss.FinishedAt),
				deadLettered: ss.DeadLettered, score: ss.Score, inspectorURL: ss.InspectorURL,
				rules: ss.Rules, commit: ss.Commit, reason: ss.Reason,
			}
			r.scans = append(r.scans, sc)
			st.nextSeq = max(st.nextSeq, sc.seq)
			switch stt {
			case statusQueued:
				queued = append(queued, sc)
			case statusPending:
				pending = append(pending, sc)
			case statusFinished:
				st.scans.finished++
				for _, name := range sc.rules {
					st.knownRules[name] = struct{}{}
				}
			case statusFailed:
				if !sc.deadLettered {
					st.scans.failed++
				}
			}
		}
		st.releases[key] = r
		st.order = append(st.order, r)
	}
	sort.Slice(queued, func(i, j int) bool { return queued[i].seq < queued[j].seq })
	for _, sc := range queued {
		st.queue.push(sc)
	}
	sort.SliceStable(pending, func(i, j int) bool { return pending[i].pendingAt.Before(pending[j].pendingAt) })
	for _, sc := range pending {
		sc.lease = st.leaseList(sc).PushBack(sc)
	}
	st.count = counters{
		leases: snap.Counters.Leases, deadLettered: snap.Counters.DeadLettered,
		finished: snap.Counters.Finished, failed: snap.Counters.Failed,
	}
	s.log.Info("devapi: snapshot loaded", "path", path, "releases", len(snap.Releases), "queued", len(queued), "pending", len(pending))
	return nil
}
