package devapi

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// ruleSet is an immutable set of rule sources with its hash.
type ruleSet struct {
	hash    string
	sources map[string]string
}

// rulesHash is a deterministic 40-hex-digit digest (SHA-1, like a git commit
// id) of the (stem, source) pairs sorted by stem. Each string is length
// prefixed, so no two different sets share an encoding.
func rulesHash(sources map[string]string) string {
	stems := make([]string, 0, len(sources))
	for k := range sources {
		stems = append(stems, k)
	}
	sort.Strings(stems)
	h := sha1.New()
	var n [8]byte
	put := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	for _, k := range stems {
		put(k)
		put(sources[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// rules holds the current rule set: the in-memory Config.Rules plus the
// *.yara / *.yar files of Config.RulesDir (a file wins over a map entry with
// the same stem).
type rules struct {
	static map[string]string
	dir    string

	mu        sync.Mutex // guards the fields below
	cur       ruleSet
	stamp     uint64    // fingerprint of the dir entries at the last read
	checkedAt time.Time // last cheap check (injected clock)
}

// ruleCheckInterval bounds how often a request stats RulesDir.
const ruleCheckInterval = time.Second

func newRules(static map[string]string, dir string) (*rules, error) {
	r := &rules{static: static, dir: dir}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// current returns the rule set, first re-reading RulesDir if at most once
// per ruleCheckInterval a stat of its entries shows a change.
func (r *rules) current(now time.Time) (ruleSet, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dir != "" && (r.checkedAt.IsZero() || now.Sub(r.checkedAt) >= ruleCheckInterval || now.Before(r.checkedAt)) {
		r.checkedAt = now
		stamp, err := dirStamp(r.dir)
		if err != nil {
			return r.cur, err
		}
		if stamp != r.stamp {
			if err := r.reloadLocked(); err != nil {
				return r.cur, err
			}
		}
	}
	return r.cur, nil
}

// reload re-reads RulesDir unconditionally.
func (r *rules) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloadLocked()
}

func (r *rules) reloadLocked() error {
	src := make(map[string]string, len(r.static))
	for k, v := range r.static {
		src[k] = v
	}
	var stamp uint64
	if r.dir != "" {
		var err error
		if stamp, err = dirStamp(r.dir); err != nil {
			return err
		}
		ents, err := os.ReadDir(r.dir)
		if err != nil {
			return fmt.Errorf("read rules dir: %w", err)
		}
		for _, e := range ents {
			ext := filepath.Ext(e.Name())
			if !e.Type().IsRegular() || (ext != ".yara" && ext != ".yar") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(r.dir, e.Name()))
			if err != nil {
				return fmt.Errorf("read rules: %w", err)
			}
			src[strings.TrimSuffix(e.Name(), ext)] = string(data)
		}
	}
	r.cur = ruleSet{hash: rulesHash(src), sources: src}
	r.stamp = stamp
	return nil
}

// dirStamp fingerprints the rule files of dir by name, size and mtime.
func dirStamp(dir string) (uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("read rules dir: %w", err)
	}
	h := fnv.New64a()
	var b [8]byte
	for _, e := range ents {
		ext := filepath.Ext(e.Name())
		if ext != ".yara" && ext != ".yar" {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since ReadDir
		}
		if err != nil {
			return 0, fmt.Errorf("stat rules: %w", err)
		}
		h.Write([]byte(e.Name()))
		binary.BigEndian.PutUint64(b[:], uint64(info.Size()))
		h.Write(b[:])
		binary.BigEndian.PutUint64(b[:], uint64(info.ModTime().UnixNano()))
		h.Write(b[:])
	}
	return h.Sum64(), nil
}
