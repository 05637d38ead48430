package mainframe

import (
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// TestMalformedJobLogIsBounded: encoding/json puts a number's whole
// literal in an UnmarshalTypeError ("number 1111..."), and a malformed job's
// error is logged as it is: one "attempt" of a MiB of digits wrote a MiB
// log line (64 MiB with the default MaxResponseBytes).
func TestMalformedJobLogIsBounded(t *testing.T) {
	body := `[{"name":"a","version":"1","distributions":[],"hash":"h","attempt":` + strings.Repeat("1", 1<<20) + `},` +
		`{"name":"b","version":"1","distributions":[],"hash":"h"}]`
	logs := leaseLogged(t, body, "b")
	if n := len(logs); n > 8<<10 {
		t.Fatalf("%d bytes logged for one malformed job; want a bounded line", n)
	}
}

// TestMalformedJobsHeldBounded: every malformed job of an answer
// kept an error until the answer was decoded, though only the first
// maxSkippedLogged are logged: an answer of 2 MiB of "{}," held about 100
// bytes per 3 bytes of input (a 64 MiB answer: gigabytes).
func TestMalformedJobsHeldBounded(t *testing.T) {
	const n = 700_000
	body := []byte("[" + strings.Repeat("{},", n) + `{"name":"b","version":"1","distributions":[],"hash":"h"}]`)
	before := testkit.HeapInUse()
	jobs, skipped, err := decodeJobs(body)
	after := testkit.HeapInUse()
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs %v, err %v", jobs, err)
	}
	held := int64(after) - int64(before)
	if held > int64(len(body)) {
		t.Fatalf("%d bytes held after decoding a %d-byte answer of malformed jobs", held, len(body))
	}
	runtime.KeepAlive(skipped)
}

// leaseLogged leases once from an API answering body, checks that the jobs
// named are leased, and returns what the client logged.
func leaseLogged(t *testing.T, body string, names ...string) string {
	t.Helper()
	var logs syncBuffer
	api := newFakeAPI()
	api.fail("POST /jobs", fault{status: 200, body: body})
	c := overTCP(t, api, func(cfg *Config) { cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	jobs, err := c.Lease(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	leased(names...)(t, jobs)
	return logs.String()
}
