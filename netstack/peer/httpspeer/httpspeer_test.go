package httpspeer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

// testNode is one node: keys, its transport, and an HTTPS server set up as
// appliance/node sets up the real listener (http.Server.ServeTLS with the
// node's TLS config), or, with h1Only, a listener that speaks HTTP/1.1 only.
type testNode struct {
	keys   *identity.Keys
	tr     *Transport
	srv    *http.Server
	tlsCfg *tls.Config
	url    string
	conns  atomic.Int64
	rec    registry.Node

	// exchanges counts HTTP requests by path; noBatch makes the node
	// answer a batch as a build without batching does (404).
	exMu      sync.Mutex
	exchanges map[string]int
	noBatch   atomic.Bool
}

func (n *testNode) exchangeCount(path string) int {
	n.exMu.Lock()
	defer n.exMu.Unlock()
	return n.exchanges[path]
}

func newTestNode(t testing.TB, known func(ed25519.PublicKey) bool) *testNode {
	return startTestNode(t, known, false)
}

func startTestNode(t testing.TB, known func(ed25519.PublicKey) bool, h1Only bool) *testNode {
	t.Helper()
	keys, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{keys: keys, exchanges: map[string]int{}}
	n.tr = New(Config{Keys: keys, Known: known, Logger: slog.New(slog.DiscardHandler)})
	certs, err := keys.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	n.tlsCfg = &tls.Config{Certificates: certs, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	count := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.exMu.Lock()
		n.exchanges[r.URL.Path]++
		n.exMu.Unlock()
		if n.noBatch.Load() && r.URL.Path == PathPrefix+batchCommand {
			http.NotFound(w, r)
			return
		}
		n.tr.ServeHTTP(w, r)
	})
	n.srv = &http.Server{Handler: count, TLSConfig: n.tlsCfg, ErrorLog: log.New(io.Discard, "", 0)}
	if h1Only {
		n.srv.Protocols = new(http.Protocols)
		n.srv.Protocols.SetHTTP1(true)
	}
	n.srv.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.conns.Add(1)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go n.srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { n.tr.CloseIdleConnections(); n.srv.Close() })
	ap := netip.MustParseAddrPort(ln.Addr().String())
	n.url = "https://" + ap.String()
	copy(n.rec.Ed25519[:], keys.Ed25519Pub)
	n.rec.IP, n.rec.HTTPSPort = ap.Addr(), ap.Port()
	return n
}

func everyone(ed25519.PublicKey) bool { return true }

func TestCallCarriesVerifiedCallerKey(t *testing.T) {
	a, b := newTestNode(t, everyone), newTestNode(t, everyone)
	var from ed25519.PublicKey
	b.tr.Handle(peer.CmdPing, func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
		from = f
		return peer.Reply{Status: http.StatusAccepted, Body: append([]byte("pong "), body...)}
	})
	r, err := a.tr.Call(context.Background(), b.rec, peer.CmdPing, []byte{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusAccepted || !bytes.Equal(r.Body, []byte("pong \x00\x01\x02")) {
		t.Fatalf("reply %d %q", r.Status, r.Body)
	}
	if !from.Equal(a.keys.Ed25519Pub) {
		t.Fatalf("handler saw caller %x, want %x", []byte(from), []byte(a.keys.Ed25519Pub))
	}
}

// Calls go over HTTP/1.1 keep-alive connections, reused by later calls,
// whether the listener also speaks HTTP/2 or not. Five bursts open about
// one connection per call in flight, not one per call: a call returns a
// moment before its connection is back in the pool, so the next burst may
// dial a few more (the pool keeps maxConnsPerPeer), hence the bound of
// twice the calls in flight against 1+5×burst calls.
func TestConnectionReuse(t *testing.T) {
	for _, tc := range []struct {
		name       string
		h1Only     bool
		concurrent int
		conns      int64
	}{
		{"sequential calls share a connection", false, 1, 2},
		{"bursts reuse their connections", false, maxConnsPerPeer, 2 * maxConnsPerPeer},
		{"listener without h2", true, maxConnsPerPeer, 2 * maxConnsPerPeer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newTestNode(t, everyone), startTestNode(t, everyone, tc.h1Only)
			var proto atomic.Value
			b.tr.Handle(peer.CmdPing, func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
				return peer.Reply{Status: 200, Body: []byte("pong")}
			})
			b.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				proto.Store(r.Proto)
				b.tr.ServeHTTP(w, r)
			})
			// One call first: connections are made before the burst.
			if _, err := a.tr.Call(context.Background(), b.rec, peer.CmdPing, nil); err != nil {
				t.Fatal(err)
			}
			for round := 0; round < 5; round++ {
				// Let the last burst's connections get back to the pool.
				time.Sleep(20 * time.Millisecond)
				var wg sync.WaitGroup
				errs := make(chan error, tc.concurrent)
				for i := 0; i < tc.concurrent; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if r, err := a.tr.Call(context.Background(), b.rec, peer.CmdPing, nil); err != nil || r.Status != 200 {
							errs <- fmt.Errorf("call: %v %d", err, r.Status)
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
			}
			if got := b.conns.Load(); got > tc.conns {
				t.Fatalf("%d connections for bursts of %d calls, want at most %d: connections are not reused", got, tc.concurrent, tc.conns)
			}
			if proto.Load() != "HTTP/1.1" {
				t.Fatalf("protocol %v, want HTTP/1.1", proto.Load())
			}
		})
	}
}

func TestServerRefuses(t *testing.T) {
	a := newTestNode(t, everyone)
	// b only knows a node that is not a.
	b := newTestNode(t, func(ed ed25519.PublicKey) bool { return ed[0] == 0xff && ed[1] == 0xff })
	b.tr.Handle(peer.CmdPing, func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
		return peer.Reply{Status: 200}
	})
	r, err := a.tr.Call(context.Background(), b.rec, peer.CmdPing, nil)
	if err != nil || r.Status != http.StatusForbidden {
		t.Fatalf("unknown caller: reply %d %q err %v, want 403", r.Status, r.Body, err)
	}

	// A client without a certificate (a Session client, a browser).
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer c.CloseIdleConnections()
	resp, err := c.Post(b.url+PathPrefix+peer.CmdPing, "application/octet-stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no client certificate: %d, want 403", resp.StatusCode)
	}
}

func TestServerStatuses(t *testing.T) {
	a, b := newTestNode(t, everyone), newTestNode(t, everyone)
	b.tr.Handle("echo", func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
		return peer.Reply{Status: 200, Body: body}
	})
	b.tr.Handle("broken", func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
		var m map[string]int
		m["x"]++ // a handler bug must not take the listener down
		return peer.Reply{Status: 200}
	})
	b.tr.Handle("nostatus", func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
		return peer.Reply{}
	})
	tests := []struct {
		name    string
		command string
		body    []byte
		status  int
	}{
		{"unknown command", "nope", nil, http.StatusNotFound},
		{"largest body", "echo", make([]byte, MaxBodyBytes), http.StatusOK},
		{"panicking handler", "broken", nil, http.StatusInternalServerError},
		{"handler without status", "nostatus", nil, http.StatusInternalServerError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := a.tr.Call(context.Background(), b.rec, tc.command, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tc.status {
				t.Fatalf("status %d (%q), want %d", r.Status, r.Body, tc.status)
			}
		})
	}
	if _, err := a.tr.Call(context.Background(), b.rec, "echo", make([]byte, MaxBodyBytes+1)); err == nil {
		t.Fatal("client sent a body over the limit")
	}
}

func TestServerRejectsOversizeAndGET(t *testing.T) {
	a, b := newTestNode(t, everyone), newTestNode(t, everyone)
	b.tr.Handle("echo", func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
		return peer.Reply{Status: 200, Body: body}
	})
	cert, err := a.keys.PeerCertificate()
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}}}
	defer c.CloseIdleConnections()

	// Chunked upload (no Content-Length) over the limit.
	big := io.MultiReader(bytes.NewReader(make([]byte, MaxBodyBytes)), bytes.NewReader([]byte("x")))
	resp, err := c.Post(b.url+PathPrefix+"echo", "application/octet-stream", big)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize chunked body: %d, want 413", resp.StatusCode)
	}
	resp, err = c.Get(b.url + PathPrefix + "echo")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d, want 405", resp.StatusCode)
	}
}

func TestCallFailures(t *testing.T) {
	a, b, c := newTestNode(t, everyone), newTestNode(t, everyone), newTestNode(t, everyone)
	release := make(chan struct{})
	b.tr.Handle("slow", func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return peer.Reply{Status: 200}
	})
	defer close(release)

	t.Run("wrong identity at the address is unreachable", func(t *testing.T) {
		imposter := b.rec
		imposter.Ed25519 = c.rec.Ed25519 // registry says c lives at b's address
		_, err := a.tr.Call(context.Background(), imposter, "slow", nil)
		if !errors.Is(err, peer.ErrUnreachable) {
			t.Fatalf("err = %v, want ErrUnreachable", err)
		}
	})
	t.Run("closed port is unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gone := c.rec
		ap := netip.MustParseAddrPort(ln.Addr().String())
		ln.Close()
		gone.HTTPSPort = ap.Port()
		_, err = a.tr.Call(context.Background(), gone, peer.CmdPing, nil)
		if !errors.Is(err, peer.ErrUnreachable) {
			t.Fatalf("err = %v, want ErrUnreachable", err)
		}
	})
	t.Run("no address is unreachable", func(t *testing.T) {
		_, err := a.tr.Call(context.Background(), registry.Node{}, peer.CmdPing, nil)
		if !errors.Is(err, peer.ErrUnreachable) {
			t.Fatalf("err = %v, want ErrUnreachable", err)
		}
	})
	t.Run("deadline is a timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := a.tr.Call(ctx, b.rec, "slow", nil)
		if !errors.Is(err, peer.ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
	})
}

func TestAddressChangeGetsNewPool(t *testing.T) {
	a, b := newTestNode(t, everyone), newTestNode(t, everyone)
	b.tr.Handle(peer.CmdPing, func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
		return peer.Reply{Status: 200, Body: []byte("b")}
	})
	if _, err := a.tr.Call(context.Background(), b.rec, peer.CmdPing, nil); err != nil {
		t.Fatal(err)
	}
	// The same identity now serves from a second listener (a node that
	// moved): calls follow the registry's new address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b2 := &http.Server{Handler: b.tr, TLSConfig: b.tlsCfg}
	go b2.ServeTLS(ln, "", "")
	defer b2.Close()
	moved := b.rec
	moved.HTTPSPort = netip.MustParseAddrPort(ln.Addr().String()).Port()
	b.srv.Close()
	r, err := a.tr.Call(context.Background(), moved, peer.CmdPing, nil)
	if err != nil || string(r.Body) != "b" {
		t.Fatalf("after move: %v %q", err, r.Body)
	}
}

// A connection reopened after the pool dropped its idle ones resumes the
// TLS session (no certificate signature and check again), and the resumed
// connection still carries the caller's verified key.
func TestReconnectResumesSession(t *testing.T) {
	a, b := newTestNode(t, everyone), newTestNode(t, everyone)
	var from ed25519.PublicKey
	b.tr.Handle(peer.CmdPing, func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
		from = f
		return peer.Reply{Status: 200, Body: []byte("pong")}
	})
	var resumed []bool
	b.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resumed = append(resumed, r.TLS.DidResume)
		b.tr.ServeHTTP(w, r)
	})
	for i := 0; i < 3; i++ {
		if r, err := a.tr.Call(context.Background(), b.rec, peer.CmdPing, nil); err != nil || r.Status != 200 {
			t.Fatalf("call %d: %v %d", i, err, r.Status)
		}
		if !from.Equal(a.keys.Ed25519Pub) {
			t.Fatalf("call %d: handler saw caller %x", i, []byte(from))
		}
		a.tr.CloseIdleConnections()
	}
	if got := b.conns.Load(); got != 3 {
		t.Fatalf("%d connections, want 3 (one per call)", got)
	}
	if want := []bool{false, true, true}; !slices.Equal(resumed, want) {
		t.Fatalf("resumed per connection %v, want %v", resumed, want)
	}
}
