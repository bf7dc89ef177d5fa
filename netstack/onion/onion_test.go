package onion_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/onion"
	"github.com/snodebox/snodebox/netstack/onion/onionreq"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/peer/memtransport"
	"github.com/snodebox/snodebox/netstack/registry"
)

// echoRPC stands in for the storage RPC at a final destination.
type echoRPC struct {
	mu  sync.Mutex
	got [][]byte
}

func (e *echoRPC) Invoke(ctx context.Context, body []byte) (int, []byte, bool) {
	e.mu.Lock()
	e.got = append(e.got, append([]byte(nil), body...))
	e.mu.Unlock()
	var req struct {
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return http.StatusBadRequest, []byte("invalid request: " + err.Error()), false
	}
	out, _ := json.Marshal(map[string]any{"method": req.Method, "params": req.Params})
	return http.StatusOK, out, true
}

func (e *echoRPC) calls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.got)
}

type tnode struct {
	keys     *identity.Keys
	rec      registry.Node
	h        *onion.Handler
	rpc      *echoRPC
	ep       *memtransport.Endpoint
	notReady atomic.Bool
}

type testNet struct {
	mem   *memtransport.Network
	nodes []*tnode
	mu    sync.RWMutex
	byEd  map[[32]byte]registry.Node
}

func newNet(t testing.TB, n int, tweak func(*onion.Config)) *testNet {
	t.Helper()
	tn := &testNet{mem: memtransport.NewNetwork(), byEd: map[[32]byte]registry.Node{}}
	for i := 0; i < n; i++ {
		keys, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		nd := &tnode{keys: keys, rpc: &echoRPC{}}
		copy(nd.rec.Ed25519[:], keys.Ed25519Pub)
		nd.rec.X25519 = keys.X25519Pub
		nd.rec.IP, nd.rec.HTTPSPort = netip.MustParseAddr("127.0.0.1"), uint16(20000+i)
		nd.ep = tn.mem.Join(nd.rec.Ed25519)
		cfg := onion.Config{
			Keys: keys, RPC: nd.rpc, Transport: nd.ep, Lookup: tn.lookup,
			NotReady: func() []string {
				if nd.notReady.Load() {
					return []string{"not in a swarm"}
				}
				return nil
			},
			Logger: slog.New(slog.DiscardHandler),
		}
		if tweak != nil {
			tweak(&cfg)
		}
		nd.h = onion.New(cfg)
		nd.ep.Handle(peer.CmdOnionRequest, nd.h.HandlePeer)
		tn.byEd[nd.rec.Ed25519] = nd.rec
		tn.nodes = append(tn.nodes, nd)
	}
	return tn
}

func (tn *testNet) lookup(ed [32]byte) (registry.Node, bool) {
	tn.mu.RLock()
	defer tn.mu.RUnlock()
	n, ok := tn.byEd[ed]
	return n, ok
}

func (tn *testNet) path(idx ...int) []registry.Node {
	var p []registry.Node
	for _, i := range idx {
		p = append(p, tn.nodes[i].rec)
	}
	return p
}

// post sends an entry body to node i's /onion_req/v2.
func (tn *testNet) post(i int, body []byte) (int, []byte) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/onion_req/v2", bytes.NewReader(body))
	tn.nodes[i].h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// onion builds requests layer by layer as spec §8.5 describes, with knobs
// the client package rightly lacks: a tampered layer, a custom destination
// JSON, a starting hop_no.
type onionSpec struct {
	enc       onionreq.EncType
	payload   []byte
	destJSON  string // inner JSON of the destination layer; default {"headers":""}
	tamperAt  int    // 0-based hop whose ciphertext is corrupted; -1 none
	hopNo     int    // hop_no of the entry request
	destBlob  []byte // if set, the destination layer's blob is replaced by these raw bytes (no frame)
	routeJSON func(hop int, next registry.Node, ek [32]byte) []byte
}

// build returns the entry body and each hop's layer cipher (the last one
// reads the destination's answer).
func build(t testing.TB, path []registry.Node, s onionSpec) ([]byte, []*onionreq.Cipher) {
	t.Helper()
	if s.destJSON == "" {
		s.destJSON = `{"headers":""}`
	}
	sealFor := func(to [32]byte, pt []byte) ([]byte, [32]byte, *onionreq.Cipher) {
		priv, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		c, err := onionreq.ClientCipher(s.enc, priv, to[:])
		if err != nil {
			t.Fatal(err)
		}
		ct, err := c.Seal(pt)
		if err != nil {
			t.Fatal(err)
		}
		var ek [32]byte
		copy(ek[:], priv.PublicKey().Bytes())
		return ct, ek, c
	}
	last := len(path) - 1
	pt := onionreq.Frame(s.payload, []byte(s.destJSON))
	if s.destBlob != nil {
		pt = s.destBlob
	}
	layers := make([]*onionreq.Cipher, len(path))
	layer, ek, c := sealFor(path[last].X25519, pt)
	layers[last] = c
	if s.tamperAt == last {
		layer[len(layer)/2] ^= 0x40
	}
	for i := last - 1; i >= 0; i-- {
		var route []byte
		if s.routeJSON != nil {
			route = s.routeJSON(i, path[i+1], ek)
		}
		if route == nil {
			route, _ = json.Marshal(map[string]string{
				"destination":   hex.EncodeToString(path[i+1].Ed25519[:]),
				"ephemeral_key": hex.EncodeToString(ek[:]),
				"enc_type":      s.enc.String(),
			})
		}
		layer, ek, layers[i] = sealFor(path[i].X25519, onionreq.Frame(layer, route))
		if s.tamperAt == i {
			layer[len(layer)/2] ^= 0x40
		}
	}
	return onionreq.Request{Ciphertext: layer, EphemeralKey: ek, EncType: s.enc, HopNo: s.hopNo}.AppendEntry(), layers
}

type answer struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// open reads a destination's sealed answer (base64 unless raw).
func open(t testing.TB, c *onionreq.Cipher, body []byte, raw bool) answer {
	t.Helper()
	ct := body
	if !raw {
		var err error
		if ct, err = base64.StdEncoding.DecodeString(string(body)); err != nil {
			t.Fatalf("answer is not base64: %q", body)
		}
	}
	pt, err := c.Open(ct)
	if err != nil {
		t.Fatalf("answer does not decrypt with the destination key: %v", err)
	}
	var a answer
	if err := json.Unmarshal(pt, &a); err != nil {
		t.Fatalf("answer %q: %v", pt, err)
	}
	return a
}

func bodyString(t testing.TB, a answer) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(a.Body, &s); err != nil {
		t.Fatalf("body %s is not a JSON string: %v", a.Body, err)
	}
	return s
}

var encTypes = []onionreq.EncType{onionreq.AESGCM, onionreq.XChaCha20}

// §8.3 case 1 and §8.4 through 1-, 2- and 3-hop paths, both encryptions.
func TestFinalDestinationThroughPaths(t *testing.T) {
	tn := newNet(t, 3, nil)
	payload := []byte(`{"method":"info","params":{}}`)
	for _, enc := range encTypes {
		for _, p := range [][]int{{0}, {0, 1}, {0, 1, 2}, {2, 0, 1}} {
			t.Run(enc.String()+"/"+strconv.Itoa(len(p))+"hops", func(t *testing.T) {
				dest := tn.nodes[p[len(p)-1]]
				before := dest.rpc.calls()
				body, layers := build(t, tn.path(p...), onionSpec{enc: enc, payload: payload, tamperAt: -1})
				status, out := tn.post(p[0], body)
				if status != http.StatusOK {
					t.Fatalf("status %d %q", status, out)
				}
				a := open(t, layers[len(layers)-1], out, false)
				if a.Status != http.StatusOK {
					t.Fatalf("rpc status %d", a.Status)
				}
				// Default: the JSON result comes back as a string.
				var res struct{ Method string }
				if err := json.Unmarshal([]byte(bodyString(t, a)), &res); err != nil || res.Method != "info" {
					t.Fatalf("body %s: %v", a.Body, err)
				}
				if dest.rpc.calls() != before+1 || !bytes.Equal(dest.rpc.got[len(dest.rpc.got)-1], payload) {
					t.Fatal("destination RPC did not receive the payload exactly once")
				}
			})
		}
	}
}

// §8.3 flags: "json": true embeds the object, "base64": false returns raw
// ciphertext; a plain-text RPC answer stays a string either way.
func TestFinalDestinationFlags(t *testing.T) {
	tn := newNet(t, 2, nil)
	for _, tc := range []struct {
		name, inner string
		payload     string
		raw, embed  bool
		status      int
	}{
		{"json embeds", `{"headers":{},"json":true}`, `{"method":"info"}`, false, true, 200},
		{"base64 false", `{"headers":"","base64":false}`, `{"method":"info"}`, true, false, 200},
		{"both", `{"headers":"","base64":false,"json":true}`, `{"method":"info"}`, true, true, 200},
		{"text answer stays a string", `{"headers":"","json":true}`, `not json`, false, false, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, layers := build(t, tn.path(0, 1), onionSpec{enc: onionreq.XChaCha20, payload: []byte(tc.payload), destJSON: tc.inner, tamperAt: -1})
			status, out := tn.post(0, body)
			if status != 200 {
				t.Fatalf("status %d %q", status, out)
			}
			a := open(t, layers[1], out, tc.raw)
			if a.Status != tc.status {
				t.Fatalf("rpc status %d, want %d", a.Status, tc.status)
			}
			if embedded := len(a.Body) > 0 && a.Body[0] == '{'; embedded != tc.embed {
				t.Fatalf("body %s: embedded=%v, want %v", a.Body, embedded, tc.embed)
			}
		})
	}
}

// §8.3: a corrupted layer is a plain 400 from the hop that cannot open it,
// passed back unchanged by the hops before it.
func TestTamperedLayerAtEachHop(t *testing.T) {
	tn := newNet(t, 3, nil)
	for _, enc := range encTypes {
		for hop := 0; hop < 3; hop++ {
			t.Run(enc.String()+"/hop"+strconv.Itoa(hop), func(t *testing.T) {
				before := tn.nodes[2].rpc.calls()
				served := make([]int, 3)
				for i, n := range tn.nodes {
					served[i] = n.ep.Served(peer.CmdOnionRequest)
				}
				body, _ := build(t, tn.path(0, 1, 2), onionSpec{enc: enc, payload: []byte(`{}`), tamperAt: hop})
				status, out := tn.post(0, body)
				if status != http.StatusBadRequest || string(out) != "Invalid ciphertext" {
					t.Fatalf("got %d %q, want 400 Invalid ciphertext", status, out)
				}
				if tn.nodes[2].rpc.calls() != before {
					t.Fatal("destination ran the RPC")
				}
				// The request went exactly as far as the tampered hop.
				for i := 1; i < 3; i++ {
					want := served[i]
					if i <= hop {
						want++
					}
					if got := tn.nodes[i].ep.Served(peer.CmdOnionRequest); got != want {
						t.Errorf("node %d served %d hops, want %d", i, got, want)
					}
				}
			})
		}
	}
}

// §8.3: bad inner JSON and refused URLs are encrypted 400s inside a 200,
// sealed with the key of the layer that carried them.
func TestEncryptedInnerErrors(t *testing.T) {
	tn := newNet(t, 2, nil)
	for _, enc := range encTypes {
		for _, tc := range []struct {
			name  string
			route string
			want  string
		}{
			{"not json", `{{{`, "Invalid json"},
			{"json array", `[]`, "Invalid json"},
			{"relay without destination", `{"ephemeral_key":"` + strings.Repeat("11", 32) + `"}`, "Invalid json"},
			{"relay bad enc_type", `{"destination":"` + strings.Repeat("11", 32) + `","ephemeral_key":"` + strings.Repeat("11", 32) + `","enc_type":"des"}`, "Invalid json"},
			{"proxy target with query", `{"host":"example.org","target":"/loki/v3/lsrpc?x=1"}`, "Invalid url"},
			{"proxy target elsewhere", `{"host":"example.org","target":"/admin/lsrpc"}`, "Invalid url"},
			{"proxy protocol", `{"host":"example.org","target":"/oxen/v4/lsrpc","protocol":"gopher"}`, "Invalid url"},
		} {
			t.Run(enc.String()+"/"+tc.name, func(t *testing.T) {
				body, layers := build(t, tn.path(0, 1), onionSpec{enc: enc, payload: []byte(`{}`), tamperAt: -1,
					routeJSON: func(int, registry.Node, [32]byte) []byte { return []byte(tc.route) }})
				status, out := tn.post(0, body)
				if status != http.StatusOK {
					t.Fatalf("status %d %q, want 200", status, out)
				}
				a := open(t, layers[0], out, false)
				if a.Status != http.StatusBadRequest || bodyString(t, a) != tc.want {
					t.Fatalf("answer %d %s, want 400 %q", a.Status, a.Body, tc.want)
				}
			})
		}
	}
}

// §8.3 case 3: an unknown next node is a plain 502 naming it.
func TestUnknownDestination(t *testing.T) {
	tn := newNet(t, 2, nil)
	stranger, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var ghost registry.Node
	copy(ghost.Ed25519[:], stranger.Ed25519Pub)
	ghost.X25519 = stranger.X25519Pub
	for _, path := range [][]registry.Node{{tn.nodes[0].rec, ghost}, {tn.nodes[0].rec, tn.nodes[1].rec, ghost}} {
		body, _ := build(t, path, onionSpec{enc: onionreq.AESGCM, payload: []byte(`{}`), tamperAt: -1})
		status, out := tn.post(0, body)
		want := "Next node not found: " + hex.EncodeToString(ghost.Ed25519[:])
		if status != http.StatusBadGateway || string(out) != want {
			t.Fatalf("%d-node path: %d %q, want 502 %q", len(path), status, out, want)
		}
	}
	// Known to the registry but not answering on the transport.
	tn.mem.SetDown(tn.nodes[1].rec.Ed25519, true)
	defer tn.mem.SetDown(tn.nodes[1].rec.Ed25519, false)
	body, _ := build(t, tn.path(0, 1), onionSpec{enc: onionreq.AESGCM, payload: []byte(`{}`), tamperAt: -1})
	status, out := tn.post(0, body)
	if status != http.StatusBadGateway || !strings.HasPrefix(string(out), "Next node is currently unreachable: ") {
		t.Fatalf("down next node: %d %q", status, out)
	}
}

// §8.6: at most 15 node-to-node hops. Paths may revisit nodes, so three
// nodes make a path of any length.
func TestPathLengthLimit(t *testing.T) {
	tn := newNet(t, 3, nil)
	cycle := func(n int) []int {
		p := make([]int, n)
		for i := range p {
			p[i] = i % 3
		}
		return p
	}
	for _, tc := range []struct {
		nodes  int
		status int
	}{
		{16, http.StatusOK},         // 15 relayed hops: the last arrives with hop_no 15
		{17, http.StatusBadRequest}, // 16 relayed hops
	} {
		p := cycle(tc.nodes)
		body, layers := build(t, tn.path(p...), onionSpec{enc: onionreq.XChaCha20, payload: []byte(`{"method":"info"}`), tamperAt: -1})
		status, out := tn.post(0, body)
		if status != tc.status {
			t.Fatalf("%d-node path: %d %q, want %d", tc.nodes, status, out, tc.status)
		}
		if status == http.StatusOK {
			if a := open(t, layers[len(layers)-1], out, false); a.Status != 200 {
				t.Fatalf("%d-node path: rpc status %d", tc.nodes, a.Status)
			}
		} else if string(out) != "onion request max path length exceeded" {
			t.Fatalf("%d-node path: %q", tc.nodes, out)
		}
	}
	// A client-chosen starting hop_no counts too.
	body, _ := build(t, tn.path(0, 1), onionSpec{enc: onionreq.AESGCM, payload: []byte(`{}`), tamperAt: -1, hopNo: 15})
	if status, out := tn.post(0, body); status != http.StatusBadRequest || string(out) != "onion request max path length exceeded" {
		t.Fatalf("entry hop_no 15: %d %q", status, out)
	}
}

// §8.3: a node that is not ready refuses before decrypting, naming itself.
func TestNotReady(t *testing.T) {
	tn := newNet(t, 2, nil)
	want := "Snode not ready: " + tn.nodes[1].keys.Ed25519Hex()
	tn.nodes[1].notReady.Store(true)
	body, _ := build(t, tn.path(1), onionSpec{enc: onionreq.AESGCM, payload: []byte(`{}`), tamperAt: -1})
	// on its HTTPS endpoint the reasons instead (§1.1)
	if status, out := tn.post(1, body); status != http.StatusServiceUnavailable || string(out) != "Service node is not ready: not in a swarm\n" {
		t.Fatalf("entry: %d %q", status, out)
	}
	body, _ = build(t, tn.path(0, 1), onionSpec{enc: onionreq.AESGCM, payload: []byte(`{}`), tamperAt: -1})
	if status, out := tn.post(0, body); status != http.StatusServiceUnavailable || string(out) != want {
		t.Fatalf("relayed: %d %q", status, out)
	}
	if tn.nodes[1].rpc.calls() != 0 {
		t.Fatal("a node that is not ready ran the RPC")
	}
}

// Malformed entry and peer bodies: clear 4xx, nothing else.
func TestMalformedRequests(t *testing.T) {
	tn := newNet(t, 1, nil)
	ek := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		text   string
	}{
		{"empty", nil, 400, "Invalid onion request"},
		{"length past end", []byte{0xff, 0xff, 0xff, 0x7f, 1, 2}, 400, "Invalid onion request"},
		{"no metadata", onionreq.Frame([]byte("x"), nil), 400, "Invalid onion request"},
		{"short ephemeral key", onionreq.Frame([]byte("x"), []byte(`{"ephemeral_key":"abcd"}`)), 400, "Invalid onion request"},
		{"unknown enc_type", onionreq.Frame([]byte("x"), []byte(`{"ephemeral_key":"`+ek+`","enc_type":"rot13"}`)), 400, "Invalid onion request"},
		{"garbage ciphertext", onionreq.Frame([]byte("not a ciphertext at all, clearly"), []byte(`{"ephemeral_key":"`+ek+`"}`)), 400, "Invalid ciphertext"},
		{"low-order key", onionreq.Frame(make([]byte, 64), []byte(`{"ephemeral_key":"`+strings.Repeat("00", 32)+`"}`)), 400, "Invalid ciphertext"},
		{"cbc garbage", onionreq.Frame(make([]byte, 48), []byte(`{"ephemeral_key":"`+ek+`","enc_type":"cbc"}`)), 400, "Invalid ciphertext"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := tn.post(0, tc.body)
			if status != tc.status || !strings.HasPrefix(string(out), tc.text) {
				t.Fatalf("%d %q, want %d %q…", status, out, tc.status, tc.text)
			}
		})
	}
	rec := httptest.NewRecorder()
	tn.nodes[0].h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/onion_req/v2", io.MultiReader(bytes.NewReader(make([]byte, onion.MaxBodyBytes)), strings.NewReader("x"))))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize body: %d", rec.Code)
	}
	for _, body := range [][]byte{nil, []byte("le"), []byte("d4:data1:xe"), []byte("d4:data1:x13:ephemeral_key3:abce")} {
		r := tn.nodes[0].h.HandlePeer(context.Background(), make(ed25519.PublicKey, 32), body)
		if r.Status != http.StatusBadRequest {
			t.Fatalf("peer body %q: %d %q", body, r.Status, r.Body)
		}
	}
}

// §8.6 receiving side: hop_no is checked before anything else.
func TestHandlePeerHopLimit(t *testing.T) {
	tn := newNet(t, 1, nil)
	for _, tc := range []struct {
		hop    int
		status int
	}{{0, 400}, {1, 400}, {15, 400}, {16, 400}} {
		body := onionreq.Request{Ciphertext: []byte("junk that will not decrypt"), EncType: onionreq.AESGCM, HopNo: tc.hop}
		body.EphemeralKey[0] = 9
		r := tn.nodes[0].h.HandlePeer(context.Background(), nil, body.MarshalPeer())
		want := "Invalid ciphertext"
		if tc.hop > onionreq.MaxHops {
			want = "onion request max path length exceeded"
		}
		if r.Status != tc.status || string(r.Body) != want {
			t.Errorf("hop_no %d: %d %q, want %q", tc.hop, r.Status, r.Body, want)
		}
	}
}

// §8.6: a next hop that does not answer within the hop timeout is a 504.
func TestRelayTimeout(t *testing.T) {
	tn := newNet(t, 2, nil)
	onion.SetLimits(tn.nodes[0].h, 50*time.Millisecond, time.Second, 4)
	release := make(chan struct{})
	defer close(release)
	tn.nodes[1].ep.Handle(peer.CmdOnionRequest, func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
		<-release
		return peer.Reply{Status: 200}
	})
	body, _ := build(t, tn.path(0, 1), onionSpec{enc: onionreq.AESGCM, payload: []byte(`{}`), tamperAt: -1})
	if status, out := tn.post(0, body); status != http.StatusGatewayTimeout || string(out) != "Request time out" {
		t.Fatalf("%d %q, want 504", status, out)
	}
}

// Stats say what each node did with the requests it saw.
func TestStats(t *testing.T) {
	tn := newNet(t, 3, nil)
	body, _ := build(t, tn.path(0, 1, 2), onionSpec{enc: onionreq.AESGCM, payload: []byte(`{"method":"info"}`), tamperAt: -1})
	tn.post(0, body)
	body, _ = build(t, tn.path(0, 1, 2), onionSpec{enc: onionreq.AESGCM, payload: []byte(`{}`), tamperAt: 2})
	tn.post(0, body)
	tn.post(0, []byte("junk"))
	ghost := tn.nodes[2].rec
	ghost.Ed25519[0] ^= 1
	body, _ = build(t, []registry.Node{tn.nodes[0].rec, ghost}, onionSpec{enc: onionreq.AESGCM, payload: []byte(`{}`), tamperAt: -1})
	tn.post(0, body)
	for i, want := range []onion.Stats{
		{Entry: 4, Relayed: 2, Refused: 1, Failed: 1},
		{Hops: 2, Relayed: 2},
		{Hops: 2, Final: 1, Refused: 1},
	} {
		if got := tn.nodes[i].h.Stats(); got != want {
			t.Errorf("node %d stats %+v, want %+v", i, got, want)
		}
	}
}
