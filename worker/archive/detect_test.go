package archive

import (
	"bytes"
	"hash/crc32"
	"runtime"
	"testing"
)

func TestDetect(t *testing.T) {
	sd := sdist(t)
	tgz := gz(t, sd)
	wheel := stdZip(t, sdistFiles...)
	html := []byte("<!DOCTYPE html>\n<html><body>404</body></html>\n")
	tests := []struct {
		name string
		head []byte
		want Format
	}{
		{"tar", sd, Tar},
		{"tar head only", sd[:262], Tar},
		{"v7 tar", rawTar(rawTarHeader("a.py", '0', 1, ""), []byte("a")), Tar},
		{"v7 tar, bad checksum", flip(rawTar(rawTarHeader("a.py", '0', 1, ""), []byte("a")), 150), Raw},
		{"empty tar", makeTar(t), Tar},
		{"tar.gz", tgz, TarGzip},
		{"tar.gz, first 200 bytes", tgz[:200], TarGzip},
		{"tar.gz, too short to tell", tgz[:12], Gzip},
		{"gzip of html", gz(t, html), Gzip},
		{"tar.xz", xzc(t, sd), TarXz},
		{"xz of html", xzc(t, html), Xz},
		{"tar.bz2", readTestdata(t, "small.tar.bz2"), TarBzip2},
		{"bzip2 of text", readTestdata(t, "note.txt.bz2"), Bzip2},
		{"wheel", wheel, Zip},
		{"wheel head only", wheel[:4], Zip},
		{"empty zip", buildZip(t, zipOpts{}), Zip},
		{"self-extracting zip", append([]byte("#!/bin/sh\n"), wheel...), Zip},
		{"self-extracting zip, head only", append([]byte("#!/bin/sh\n"), wheel...)[:100], Raw},
		{"html", html, Raw},
		{"text starting BZh", []byte("BZhello, this is not bzip2 at all"), Raw},
		{"text starting with an end record signature", []byte("PK\x05\x06 short"), Raw},
		{"empty", nil, Raw},
		{"one zero block", make([]byte, 512), Raw},
		{"two zero blocks", make([]byte, 1024), Tar},
	}
	for _, tc := range tests {
		if got := Detect(tc.head); got != tc.want {
			t.Errorf("%s: Detect = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDetectDoesNotAllocateXzDictionaries(t *testing.T) {
	b := hugeXzDict(xzc(t, sdist(t)))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got := Detect(b)
	runtime.ReadMemStats(&after)
	if got != Xz {
		t.Errorf("Detect = %v, want xz (it cannot peek without the dictionary)", got)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("Detect allocated %d bytes", d)
	}
}

// hugeXzDict returns a copy of an xz stream whose first block declares a
// 4 GiB dictionary.
func hugeXzDict(b []byte) []byte {
	return patch(b, func(c []byte) {
		hlen := (int(c[12]) + 1) * 4
		h := c[12 : 12+hlen]
		// The filter flags: block flags, id 0x21, size 1, dictionary.
		i := bytes.Index(h[2:], []byte{0x21, 1}) + 2
		h[i+2] = 40
		le.PutUint32(h[hlen-4:], crc32.ChecksumIEEE(h[:hlen-4]))
	})
}
