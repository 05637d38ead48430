package devapi

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"time"
)

// synthesizer builds tiny deterministic sdists, reusing one gzip writer.
type synthesizer struct {
	buf bytes.Buffer
	gz  *gzip.Writer
}

func newSynthesizer() *synthesizer {
	s := &synthesizer{}
	s.gz, _ = gzip.NewWriterLevel(&s.buf, gzip.BestSpeed) // a valid level never fails
	return s
}

// synthMTime is the fixed modification time of synthetic archive entries.
var synthMTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// sdist returns name-version.tar.gz holding name-version/PKG-INFO and
// name-version/setup.py; the bytes depend only on name and version.
func (s *synthesizer) sdist(name, version string) (string, []byte, error) {
	s.buf.Reset()
	s.gz.Reset(&s.buf)
	tw := tar.NewWriter(s.gz)
	root := name + "-" + version
	files := []struct{ path, body string }{
		{root + "/PKG-INFO", fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: synthetic release for load tests\n", name, version)},
		{root + "/setup.py", fmt.Sprintf("from setuptools import setup\n\nsetup(name=%q, version=%q)\n", name, version)},
	}
	for _, f := range files {
		hdr := &tar.Header{Name: f.path, Mode: 0o644, Size: int64(len(f.body)), ModTime: synthMTime, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", nil, fmt.Errorf("write tar: %w", err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			return "", nil, fmt.Errorf("write tar: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", nil, fmt.Errorf("write tar: %w", err)
	}
	if err := s.gz.Close(); err != nil {
		return "", nil, fmt.Errorf("write gzip: %w", err)
	}
	return root + ".tar.gz", bytes.Clone(s.buf.Bytes()), nil
}
