package verdict

import (
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/worker/archive"
)

// pip unpacks sdists named with any of its archive extensions (.tbz, .tlz,
// .tar.lz and .tar.lzma too, the last three as LZMA or xz); content the
// scanner cannot open under such a name must fail the distribution, not
// be scanned as one raw file and reported clean.
func TestNotAnArchiveCoversPipExtensions(t *testing.T) {
	for _, name := range []string{
		"foo-1.0.tar.gz", "foo-1.0.tgz", "foo-1.0.tar.bz2", "foo-1.0.tbz", "foo-1.0.tar.xz", "foo-1.0.txz",
		"foo-1.0.tlz", "foo-1.0.tar.lz", "foo-1.0.tar.lzma", "foo-1.0.tar", "foo-1.0.zip", "foo-1.0-py3-none-any.whl",
	} {
		if err := notAnArchive(name, archive.Raw.String()); err == nil {
			t.Errorf("%s: raw content accepted", name)
		}
		// pip matches extensions case-insensitively (it lowercases the
		// file name), so FOO-1.0.TAR.GZ is an sdist to it too.
		if upper := strings.ToUpper(name); notAnArchive(upper, archive.Raw.String()) == nil {
			t.Errorf("%s: raw content accepted", upper)
		}
	}
	if err := notAnArchive("README.txt", archive.Raw.String()); err != nil {
		t.Errorf("README.txt: %v", err)
	}
}
