package mainframe

import "testing"

// TestAPIErrorFinalLeavesCredentialTroubleRetryable: a refusal of the
// credentials (401, and 403, which Cloudflare Access answers for a revoked
// or rotated service token) is not final: the work waiting on it (a report
// in the outbox) is retried until the credentials work again or its max age
// passes, instead of being dropped (its job leased and scanned again, at
// the cost of an attempt). What the API says about the request itself
// stays final.
func TestAPIErrorFinalLeavesCredentialTroubleRetryable(t *testing.T) {
	for status, final := range map[int]bool{
		400: true, 401: false, 403: false, 404: true, 408: false, 409: true,
		413: true, 422: true, 429: false, 500: false, 502: false, 503: false,
	} {
		if got := (&APIError{Endpoint: "PUT /package", Status: status}).Final(); got != final {
			t.Errorf("status %d: Final() = %v, want %v", status, got, final)
		}
	}
}
