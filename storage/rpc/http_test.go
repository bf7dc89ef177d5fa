package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// tlsServer serves n.srv at /storage_rpc/v1 over TLS on 127.0.0.1.
func tlsServer(t *testing.T, n *testNode) (*httptest.Server, *rpcclient.Client) {
	t.Helper()
	ts := httptest.NewTLSServer(n.srv)
	t.Cleanup(ts.Close)
	c := rpcclient.New()
	return ts, c
}

func post(t *testing.T, c *rpcclient.Client, url string, body []byte, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+rpcclient.Path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp, b.String()
}

// §1.1 and §2.6 over HTTPS: codes, texts and content types.
func TestHTTP(t *testing.T) {
	n := newTestNode(t, 1)
	ts, c := tlsServer(t, n)
	u := sessionSigner(t, 7)

	status, body, err := c.Do(context.Background(), ts.URL, "info", rpcclient.Info())
	if err != nil || status != 200 {
		t.Fatalf("info: %d %v %s", status, err, body)
	}
	var info map[string]any
	json.Unmarshal(body, &info)
	if info["timestamp"] != float64(testNow) || info["t"] != float64(testNow) || jsonOf(t, info["version"]) != "[2,11,3]" || jsonOf(t, info["hf"]) != "[19,6]" {
		t.Fatalf("info %s", body)
	}
	resp, _ := post(t, c, ts.URL, rpcclient.Body("info", rpcclient.Info()), nil)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("JSON answer content type %q", ct)
	}

	cases := []struct {
		name   string
		body   []byte
		hdr    map[string]string
		status int
		text   string
	}{
		{"malformed JSON", []byte(`{"method":`), nil, 400, "invalid json"},
		{"not an object", []byte(`[1,2]`), nil, 400, "invalid json"},
		{"no method", []byte(`{"params":{}}`), nil, 400, "invalid json: no `method` field"},
		{"method not a string", []byte(`{"method":5,"params":{}}`), nil, 400, "invalid json: no `method` field"},
		{"no params", []byte(`{"method":"info"}`), nil, 400, "invalid json: no `params` field"},
		{"params not an object", []byte(`{"method":"info","params":[]}`), nil, 400, "invalid json: no `params` field"},
		{"unknown method", rpcclient.Body("frobnicate", nil), nil, 400, "no method frobnicate"},
		{"revoked_subaccounts is a method", rpcclient.Body("revoked_subaccounts", map[string]any{}), nil, 400, "invalid request: Required field 'pubkey' missing"},
		{"extra keys ignored", []byte(`{"jsonrpc":"2.0","method":"frobnicate","params":{}}`), nil, 400, "no method frobnicate"},
		{"pubkey of the wrong type", rpcclient.Body("get_swarm", map[string]any{"pubkey": 5}), nil, 400, "invalid request: Invalid value given for 'pubkey': expected string"},
		{"long poll", rpcclient.Body("info", nil), map[string]string{"X-Loki-Long-Poll": "true"}, 410, "long polling is no longer supported, please update your client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, text := post(t, c, ts.URL, tc.body, tc.hdr)
			if resp.StatusCode != tc.status || text != tc.text {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, text, tc.status, tc.text)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/plain" {
				t.Fatalf("text answer content type %q", ct)
			}
		})
	}

	t.Run("body over 10 MiB", func(t *testing.T) {
		big := make([]byte, MaxBodyBytes+1)
		resp, _ := post(t, c, ts.URL, big, nil)
		if resp.StatusCode != 413 {
			t.Fatalf("status %d, want 413", resp.StatusCode)
		}
		// chunked upload of the same size (no Content-Length)
		req, _ := http.NewRequest(http.MethodPost, ts.URL+rpcclient.Path, struct{ *bytes.Reader }{bytes.NewReader(big)})
		req.ContentLength = -1
		r2, err := c.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		if r2.StatusCode != 413 {
			t.Fatalf("chunked: status %d, want 413", r2.StatusCode)
		}
	})
	t.Run("not ready", func(t *testing.T) {
		n.swarm.notReady = []string{"not in a swarm", "clock not synced"}
		defer func() { n.swarm.notReady = nil }()
		resp, text := post(t, c, ts.URL, rpcclient.Body("info", nil), nil)
		if resp.StatusCode != 503 || text != "Service node is not ready: not in a swarm; clock not synced\n" {
			t.Fatalf("%d %q", resp.StatusCode, text)
		}
	})
	t.Run("store and retrieve over HTTPS", func(t *testing.T) {
		status, body, err := c.Do(context.Background(), ts.URL, "store", rpcclient.StoreUnsigned(u.Pubkey(), rpcclient.StoreArgs{Data: []byte("over tls"), Timestamp: testNow, TTL: day}))
		if err != nil || status != 200 {
			t.Fatalf("store: %d %v %s", status, err, body)
		}
		status, body, err = c.Do(context.Background(), ts.URL, "retrieve", u.Retrieve(rpcclient.RetrieveArgs{Timestamp: testNow}))
		if err != nil || status != 200 || !strings.Contains(string(body), `"expiration"`) {
			t.Fatalf("retrieve: %d %v %s", status, err, body)
		}
	})
	t.Run("text/plain request content type", func(t *testing.T) {
		resp, text := post(t, c, ts.URL, rpcclient.Body("info", nil), map[string]string{"Content-Type": "text/plain"})
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, text)
		}
	})
}

// §1.1: IPv4 peers only; IPv4-mapped IPv6 counts as IPv4; ::1 does not.
func TestIPv4Only(t *testing.T) {
	for _, c := range []struct {
		remote string
		ok     bool
	}{
		{"127.0.0.1:5000", true},
		{"192.0.2.7:443", true},
		{"[::ffff:192.0.2.7]:443", true},
		{"[::1]:5000", false},
		{"[2001:db8::1]:443", false},
		{"garbage", false},
	} {
		if _, ok := clientIPv4(c.remote); ok != c.ok {
			t.Errorf("clientIPv4(%q) = %v, want %v", c.remote, ok, c.ok)
		}
	}
	// end to end on an IPv6 loopback listener (when the host has one)
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Logf("no IPv6 loopback here (%v); checked the address rule only", err)
		return
	}
	n := newTestNode(t, 1)
	ts := httptest.NewUnstartedServer(n.srv)
	ts.Listener.Close()
	ts.Listener = ln
	ts.StartTLS()
	defer ts.Close()
	status, body, err := rpcclient.New().Do(context.Background(), ts.URL, "info", nil)
	if err != nil || status != 400 || string(body) != "invalid request: client address must be IPv4" {
		t.Fatalf("IPv6 client: %d %v %s", status, err, body)
	}
}

// §12: a bucket of Burst requests per IP, refilled at PerSecond, then 429.
func TestRateLimit(t *testing.T) {
	n := newTestNode(t, 1)
	n.srv.limiter = newLimiter(RateLimit{Burst: 5, PerSecond: 2, MaxClients: 2})
	ts, c := tlsServer(t, n)
	var codes []int
	for i := 0; i < 7; i++ {
		status, _, err := c.Do(context.Background(), ts.URL, "info", nil)
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, status)
	}
	if jsonOf(t, codes) != "[200,200,200,200,200,429,429]" {
		t.Fatalf("codes %v, want 5 × 200 then 429", codes)
	}
	// one second later two tokens came back (the test clock is Config.Now)
	*n.now += 1000
	for i, want := range []int{200, 200, 429} {
		if status, _, _ := c.Do(context.Background(), ts.URL, "info", nil); status != want {
			t.Fatalf("after refill #%d: %d, want %d", i, status, want)
		}
	}
	// Invoke (onion final destination) is never rate limited
	if status, _, _ := n.srv.Invoke(context.Background(), rpcclient.Body("info", nil)); status != 200 {
		t.Fatalf("Invoke limited: %d", status)
	}
}

func TestLimiterTable(t *testing.T) {
	l := newLimiter(RateLimit{Burst: 2, PerSecond: 1, MaxClients: 2})
	t0 := time.UnixMilli(testNow)
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	steps := []struct {
		ip   netip.Addr
		at   time.Duration
		want bool
	}{
		{a, 0, true}, {a, 0, true}, {a, 0, false}, // burst of 2
		{b, 0, true},                       // second client tracked
		{c, 0, false},                      // table full of active clients: limited
		{a, 1500 * time.Millisecond, true}, // refilled 1.5 tokens
		{c, 11 * time.Second, true},        // cleanup dropped refilled buckets
	}
	for i, s := range steps {
		if got := l.allow(s.ip, t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d (%s at %v): %v, want %v", i, s.ip, s.at, got, s.want)
		}
	}
	if !newLimiter(RateLimit{Disabled: true}).allow(a, t0) {
		t.Fatal("disabled limiter refused")
	}
}

// panicSwarm stands for a bug anywhere below the RPC layer.
type panicSwarm struct{ *fakeSwarm }

func (p *panicSwarm) Lookup(storage.Account) (uint64, []registry.Node, bool) {
	panic("lookup exploded")
}

// A panic below the handler is answered 500 "request failed" and logged;
// the node keeps serving.
func TestPanicIsContained(t *testing.T) {
	n := newTestNode(t, 1)
	n.srv.cfg.Swarm = &panicSwarm{n.swarm}
	u := sessionSigner(t, 7)
	body := rpcclient.Body("retrieve", u.Retrieve(rpcclient.RetrieveArgs{Timestamp: testNow}))
	if status, out, isJSON := n.srv.Invoke(context.Background(), body); status != 500 || string(out) != "request failed" || isJSON {
		t.Fatalf("Invoke: %d %s", status, out)
	}
	ts, c := tlsServer(t, n)
	for i := 0; i < 2; i++ {
		resp, text := post(t, c, ts.URL, body, nil)
		if resp.StatusCode != 500 || text != "request failed" {
			t.Fatalf("HTTP #%d: %d %s", i, resp.StatusCode, text)
		}
	}
	p := rpcclient.StoreUnsigned(u.Pubkey(), rpcclient.StoreArgs{Data: []byte("x"), Timestamp: testNow, TTL: day})
	rep := n.srv.HandleStorageCC(context.Background(), nil, storageCC("store", bencodeStore(t, p)))
	if rep.Status != 500 || string(rep.Body) != "request failed" {
		t.Fatalf("storage_cc: %d %s", rep.Status, rep.Body)
	}
}
