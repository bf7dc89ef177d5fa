package onion_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snodebox/snodebox/netstack/onion"
	"github.com/snodebox/snodebox/netstack/onion/onionclient"
	"github.com/snodebox/snodebox/netstack/onion/onionreq"
)

// lsrpcServer is a stand-in for a SOGS / file server: it receives the whole
// proxied layer (§8.3 case 2), opens the innermost blob with its own X25519
// key and answers sealed with the same key.
type lsrpcServer struct {
	*httptest.Server
	key    *ecdh.PrivateKey
	hits   atomic.Int64
	status atomic.Int64
	delay  atomic.Pointer[chan struct{}]
	huge   atomic.Bool
}

func newLSRPC(t *testing.T) *lsrpcServer {
	t.Helper()
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := &lsrpcServer{key: key}
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if d := s.delay.Load(); d != nil {
			select {
			case <-*d:
			case <-r.Context().Done():
				return
			}
		}
		if s.huge.Load() {
			w.Write(make([]byte, onion.MaxProxyReply+1))
			return
		}
		layer, _ := io.ReadAll(r.Body)
		blob, tail, err := onionreq.SplitFrame(layer)
		if err != nil {
			http.Error(w, "no frame", 400)
			return
		}
		var route struct {
			EphemeralKey string `json:"ephemeral_key"`
			EncType      string `json:"enc_type"`
			Target       string `json:"target"`
		}
		if err := json.Unmarshal(tail, &route); err != nil || route.Target != r.URL.Path {
			http.Error(w, "bad route json", 400)
			return
		}
		ek, _ := hex.DecodeString(route.EphemeralKey)
		enc, _ := onionreq.ParseEncType(route.EncType)
		c, err := onionreq.NodeCipher(enc, s.key, ek)
		if err != nil {
			http.Error(w, "bad key", 400)
			return
		}
		pt, err := c.Open(blob)
		if err != nil {
			http.Error(w, "bad ciphertext", 400)
			return
		}
		ct, _ := c.Seal(append([]byte("server got: "), pt...))
		w.WriteHeader(int(s.status.Load()))
		io.WriteString(w, base64.StdEncoding.EncodeToString(ct))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *lsrpcServer) target(host string) onionclient.Server {
	ap := netip.MustParseAddrPort(s.Listener.Addr().String())
	var x [32]byte
	copy(x[:], s.key.PublicKey().Bytes())
	if host == "" {
		host = ap.Addr().String()
	}
	return onionclient.Server{Host: host, Target: "/oxen/v4/lsrpc", Port: int(ap.Port()), Protocol: "http", X25519: x}
}

func allowPrivate(c *onion.Config) { c.AllowPrivateProxy = true }

func TestProxyToServer(t *testing.T) {
	tn := newNet(t, 3, allowPrivate)
	srv := newLSRPC(t)
	for _, enc := range encTypes {
		for _, p := range [][]int{{0}, {0, 1, 2}} {
			o, err := onionclient.BuildToServer(tn.path(p...), srv.target(""), []byte("hello"), enc)
			if err != nil {
				t.Fatal(err)
			}
			status, out := tn.post(p[0], o.Body)
			r, err := o.Decode(status, out)
			if err != nil {
				t.Fatalf("%v via %d nodes: %v", enc, len(p), err)
			}
			if r.Status != 200 || string(r.Body) != "server got: hello" {
				t.Fatalf("%v: %d %q", enc, r.Status, r.Body)
			}
		}
	}
	// The server's status comes back unchanged.
	srv.status.Store(http.StatusTeapot)
	o, _ := onionclient.BuildToServer(tn.path(0), srv.target(""), []byte("hi"), onionreq.AESGCM)
	if status, _ := tn.post(0, o.Body); status != http.StatusTeapot {
		t.Fatalf("status %d, want the server's 418", status)
	}
}

// By default the proxy refuses loopback and private targets, also when a
// name resolves to one (checked at dial time, after DNS).
func TestProxyRefusesPrivateByDefault(t *testing.T) {
	tn := newNet(t, 2, nil)
	srv := newLSRPC(t)
	for _, host := range []string{"", "localhost"} {
		o, _ := onionclient.BuildToServer(tn.path(0, 1), srv.target(host), []byte("hello"), onionreq.XChaCha20)
		status, out := tn.post(0, o.Body)
		if status != http.StatusBadGateway || string(out) != "Proxy target not allowed" {
			t.Fatalf("host %q: %d %q, want 502 refusal", host, status, out)
		}
	}
	if srv.hits.Load() != 0 {
		t.Fatal("the private server was contacted")
	}
}

func TestPublicAddr(t *testing.T) {
	for s, want := range map[string]bool{
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "192.168.1.1": false, "172.16.0.1": false,
		"169.254.1.1": false, "fe80::1": false, "0.0.0.0": false, "::": false, "224.0.0.1": false,
		"ff02::1": false, "fd00::1": false, "100.64.0.1": false, "::ffff:127.0.0.1": false,
		"255.255.255.255": false, "64:ff9b::a00:1": false,
		"1.1.1.1": true, "93.184.216.34": true, "2606:4700::1111": true,
	} {
		if got := onion.PublicAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("PublicAddr(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestProxyLimits(t *testing.T) {
	tn := newNet(t, 1, allowPrivate)
	h := tn.nodes[0].h
	srv := newLSRPC(t)

	t.Run("timeout is 504", func(t *testing.T) {
		onion.SetLimits(h, time.Second, 50*time.Millisecond, 4)
		d := make(chan struct{})
		srv.delay.Store(&d)
		defer func() { srv.delay.Store(nil); close(d) }()
		o, _ := onionclient.BuildToServer(tn.path(0), srv.target(""), []byte("x"), onionreq.AESGCM)
		if status, out := tn.post(0, o.Body); status != http.StatusGatewayTimeout {
			t.Fatalf("%d %q, want 504", status, out)
		}
	})
	t.Run("connection refused is 502", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		tgt := srv.target("")
		tgt.Port = int(netip.MustParseAddrPort(dead.Listener.Addr().String()).Port())
		dead.Close()
		o, _ := onionclient.BuildToServer(tn.path(0), tgt, []byte("x"), onionreq.AESGCM)
		if status, out := tn.post(0, o.Body); status != http.StatusBadGateway {
			t.Fatalf("%d %q, want 502", status, out)
		}
	})
	t.Run("oversize answer is 502", func(t *testing.T) {
		onion.SetLimits(h, time.Second, 10*time.Second, 4)
		srv.huge.Store(true)
		defer srv.huge.Store(false)
		o, _ := onionclient.BuildToServer(tn.path(0), srv.target(""), []byte("x"), onionreq.AESGCM)
		if status, out := tn.post(0, o.Body); status != http.StatusBadGateway || !strings.Contains(string(out), "too large") {
			t.Fatalf("%d %q, want 502 too large", status, out)
		}
	})
	t.Run("full slots are 503", func(t *testing.T) {
		onion.SetLimits(h, time.Second, 10*time.Second, 1)
		d := make(chan struct{})
		srv.delay.Store(&d)
		before := srv.hits.Load()
		done := make(chan int)
		go func() {
			o, _ := onionclient.BuildToServer(tn.path(0), srv.target(""), []byte("x"), onionreq.AESGCM)
			status, _ := tn.post(0, o.Body)
			done <- status
		}()
		for srv.hits.Load() == before {
			time.Sleep(time.Millisecond)
		}
		o, _ := onionclient.BuildToServer(tn.path(0), srv.target(""), []byte("y"), onionreq.AESGCM)
		status, out := tn.post(0, o.Body)
		srv.delay.Store(nil)
		close(d)
		if first := <-done; first != http.StatusOK {
			t.Fatalf("first request: %d", first)
		}
		if status != http.StatusServiceUnavailable {
			t.Fatalf("second request with one slot busy: %d %q, want 503", status, out)
		}
	})
}
