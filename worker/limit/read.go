package limit

import (
	"errors"
	"os"

	"github.com/dragonfly-fleet/fleet/internal/bound"
)

// ReadFile reads a local distribution (a file given instead of a download),
// failing with the Download limit when it holds more than max bytes: at
// once when its size says so, and without reading past max+1 bytes when it
// grows while read.
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		return nil, &Error{Kind: Download, Max: max}
	}
	data, err := bound.ReadAll(f, max)
	if errors.Is(err, bound.ErrTooLarge) {
		return nil, &Error{Kind: Download, Max: max}
	}
	return data, err
}
