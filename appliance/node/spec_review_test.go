package node_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/storage/rpc"
)

// Spec §1.1: the HTTPS listener's routes, status texts and headers, on a
// node that has not joined a swarm yet (so readiness shows too).
func TestSpecHTTPSRoutes(t *testing.T) {
	n, err := node.New(node.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	h := n.Handler()
	legacy := base64.StdEncoding.EncodeToString(n.Self.Legacy[:])
	cases := []struct {
		method, path string
		header       http.Header
		body         string
		status       int
		text         string // exact body ("" = not checked)
		ctype        string
		extra        map[string]string // other headers
	}{
		{"POST", "/ping_test/v1", nil, "", 200, "", "", map[string]string{"X-Oxen-Snode-Pubkey": legacy}},
		{"GET", "/get_stats/v1", nil, "", 200, `{"version": "2.11.3"}`, "application/json", nil},
		{"GET", "/nothing/here?x=1", nil, "", 404, "GET /nothing/here?x=1 Not Found", "text/plain", nil},
		{"GET", "/storage_rpc/v1", nil, "", 404, "GET /storage_rpc/v1 Not Found", "text/plain", nil},
		{"PUT", "/onion_req/v2", nil, "", 404, "PUT /onion_req/v2 Not Found", "text/plain", nil},
		{"POST", "/storage_rpc/v1", nil, `{"method":"info","params":{}}`, 503, "", "text/plain", nil},
		{"POST", "/onion_req/v2", nil, "\x00\x00\x00\x00{}", 503, "", "text/plain", nil},
		{"POST", "/storage_rpc/v1", http.Header{"Content-Length": {"10485761"}}, "", 413, "", "text/plain", nil},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
			req.RemoteAddr = "192.0.2.10:5555"
			if cl := c.header.Get("Content-Length"); cl != "" {
				req.ContentLength = 10485761
				req.Body = io.NopCloser(bytes.NewReader(nil))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != c.status {
				t.Fatalf("status %d %q, want %d", res.StatusCode, body, c.status)
			}
			if c.text != "" && string(body) != c.text {
				t.Fatalf("body %q, want %q", body, c.text)
			}
			if c.status == 200 && c.path == "/ping_test/v1" && len(body) != 0 {
				t.Fatalf("ping_test body %q, want empty", body)
			}
			if c.status == 503 && !(strings.HasPrefix(string(body), "Service node is not ready: ") && strings.HasSuffix(string(body), "\n")) {
				t.Fatalf("503 body %q", body)
			}
			want := "Oxen Storage Server/2.11.3"
			if got := res.Header.Get("Server"); got != want {
				t.Fatalf("Server %q, want %q", got, want)
			}
			if c.ctype != "" && !strings.HasPrefix(res.Header.Get("Content-Type"), c.ctype) {
				t.Fatalf("Content-Type %q, want %q", res.Header.Get("Content-Type"), c.ctype)
			}
			for k, v := range c.extra {
				if got := res.Header.Get(k); got != v {
					t.Fatalf("%s %q, want %q", k, got, v)
				}
			}
		})
	}
	if rpc.ProtocolVersion != [3]int{2, 11, 3} {
		t.Fatalf("the expected version strings above assume protocol 2.11.3, have %v", rpc.ProtocolVersion)
	}
}
