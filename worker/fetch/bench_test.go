package fetch

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// BenchmarkGet50MB downloads a 50 MB body over loopback with keep-alives:
// with a Content-Length (one allocation, no copy) and chunked (geometric
// growth).
func BenchmarkGet50MB(b *testing.B) {
	payload := body(50_000_000)
	for _, tc := range []struct {
		name   string
		length bool
	}{{"content-length", true}, {"chunked", false}} {
		b.Run(tc.name, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.length {
					w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
				}
				w.Write(payload)
			}))
			defer srv.Close()
			f, err := New(Config{AllowedHosts: []string{srv.URL}})
			if err != nil {
				b.Fatal(err)
			}
			defer f.CloseIdleConnections()
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				got, err := f.Get(b.Context(), srv.URL)
				if err != nil || len(got) != len(payload) {
					b.Fatalf("got %d bytes, %v", len(got), err)
				}
			}
		})
	}
}
