package status

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/snodebox/snodebox/board/sim"
)

// Bad button bodies get a 4xx, never a panic or a 5xx.
func FuzzButtonAPI(f *testing.F) {
	for _, s := range []string{`{"hold_ms": 300}`, `{"power": true}`, `hold_ms=16000`, `power=true`, `{`, `hold_ms=%zz`, ``} {
		f.Add(s)
	}
	h := Handler(SourceFunc(sampleReport), sim.New())
	var token string
	f.Fuzz(func(t *testing.T, body string) {
		if token == "" {
			token = pageToken(t, h)
		}
		req := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/button", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(TokenHeader, token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 && rec.Code != 400 {
			t.Fatalf("body %q: status %d", body, rec.Code)
		}
	})
}
