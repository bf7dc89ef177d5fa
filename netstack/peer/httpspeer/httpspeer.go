// Package httpspeer is the peer transport over the node's HTTPS listener:
// POST /sn/v1/<command> with mutual TLS, where each node presents a
// self-signed certificate for its Ed25519 identity and the receiver checks
// that key against the registry. Busy storage_cc traffic to one peer
// shares exchanges (POST /sn/v1/batch, see batch.go).
package httpspeer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/snodebox/snodebox/netstack/httpbody"
	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

// PathPrefix is where peer commands are served.
const PathPrefix = "/sn/v1/"

// MaxBodyBytes bounds request and reply bodies (spec §12: 10 MiB).
const MaxBodyBytes = 10 << 20

// DefaultCallTimeout applies when the caller's context has no deadline, so
// a peer that accepts and never answers cannot pin a goroutine forever.
const DefaultCallTimeout = 60 * time.Second

// maxPeerClients bounds the per-peer connection pools; beyond it the least
// recently used pool is closed (mainnet has ~2,000 nodes, a swarm talks to a
// handful, onion relays to anyone).
const maxPeerClients = 4096

// Config wires a Transport.
type Config struct {
	Keys *identity.Keys
	// Known reports whether an Ed25519 key belongs to a service node we may
	// talk to (registry or static peer list).
	Known  func(ed ed25519.PublicKey) bool
	Logger *slog.Logger
}

// Transport implements peer.Transport (client side), peer.Mux, and
// http.Handler for PathPrefix (server side).
type Transport struct {
	cfg      Config
	mu       sync.RWMutex
	handlers map[string]peer.Handler

	certOnce sync.Once
	cert     tls.Certificate
	certErr  error

	poolMu sync.Mutex
	pools  map[[32]byte]*peerClient
	tick   uint64
}

// peerClient is the keep-alive pool for one peer identity at one address:
// keying by identity means a pooled connection can never carry a request to
// a different key that moved onto the same address.
//
// Calls go over HTTP/1.1 keep-alive connections, up to maxConnsPerPeer
// kept. HTTP/2 would need one connection per peer, but on these boards
// it costs more per call than a connection does to keep: measured
// (BenchmarkCall) 95 µs of CPU per call against 72 µs, caller and callee
// together, and a 3-node swarm stored 12 % more per second over HTTP/1.1.
// A new connection resumes the TLS session, so bursts beyond the pool
// skip the certificate signatures.
type peerClient struct {
	addr     string
	client   *http.Client
	tr       *http.Transport
	lastUsed uint64
	batch    batcher
}

// maxConnsPerPeer is the idle connections kept per peer: the entry of a
// swarm busy with 16 clients has about that many calls to each member in
// flight.
const maxConnsPerPeer = 16

func (pc *peerClient) closeIdle() { pc.tr.CloseIdleConnections() }

var (
	_ peer.Transport = (*Transport)(nil)
	_ peer.Mux       = (*Transport)(nil)
)

// New makes a Transport.
func New(cfg Config) *Transport {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Transport{cfg: cfg, handlers: map[string]peer.Handler{}, pools: map[[32]byte]*peerClient{}}
}

// Handle registers a command handler.
func (t *Transport) Handle(command string, h peer.Handler) {
	t.mu.Lock()
	t.handlers[command] = h
	t.mu.Unlock()
}

// Call sends a command to a peer.
func (t *Transport) Call(ctx context.Context, to registry.Node, command string, body []byte) (peer.Reply, error) {
	if !to.IP.IsValid() || to.HTTPSPort == 0 {
		return peer.Reply{}, fmt.Errorf("%w: %s has no HTTPS address", peer.ErrUnreachable, to.Ed25519Hex())
	}
	if len(body) > MaxBodyBytes {
		return peer.Reply{}, fmt.Errorf("peer %s %s: body of %d bytes exceeds %d", to, command, len(body), MaxBodyBytes)
	}
	pc, err := t.pool(to)
	if err != nil {
		return peer.Reply{}, err
	}
	if coalesces(command) {
		return t.callCoalesced(ctx, to, pc, command, body)
	}
	return t.callOne(ctx, to, pc, command, body)
}

// callOne is one HTTP exchange with a peer.
func (t *Transport) callOne(ctx context.Context, to registry.Node, pc *peerClient, command string, body []byte) (peer.Reply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	url := "https://" + pc.addr + PathPrefix + command
	resp, err := pc.do(ctx, url, body)
	if err != nil {
		return peer.Reply{}, classify(ctx, to, command, err)
	}
	defer resp.Body.Close()
	out, err := readBody(resp.Body, resp.ContentLength)
	if err != nil {
		return peer.Reply{}, classify(ctx, to, command, err)
	}
	if len(out) > MaxBodyBytes {
		return peer.Reply{}, fmt.Errorf("peer %s %s: reply exceeds %d bytes", to, command, MaxBodyBytes)
	}
	return peer.Reply{Status: resp.StatusCode, Body: out}, nil
}

// readBody reads up to MaxBodyBytes+1 bytes, so the caller sees an
// over-long body.
func readBody(r io.Reader, declared int64) ([]byte, error) {
	return httpbody.Read(r, declared, MaxBodyBytes+1)
}

func (pc *peerClient) do(ctx context.Context, url string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	return pc.client.Do(req)
}

func classify(ctx context.Context, to registry.Node, command string, err error) error {
	var ne net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %s %s: %v", peer.ErrTimeout, to, command, err)
	}
	return fmt.Errorf("%w: %s %s: %v", peer.ErrUnreachable, to, command, err)
}

func (t *Transport) clientCert() (tls.Certificate, error) {
	t.certOnce.Do(func() {
		if t.cfg.Keys == nil {
			t.certErr = errors.New("no node keys configured")
			return
		}
		t.cert, t.certErr = t.cfg.Keys.PeerCertificate()
	})
	return t.cert, t.certErr
}

func (t *Transport) pool(to registry.Node) (*peerClient, error) {
	addr := to.HTTPSAddr()
	t.poolMu.Lock()
	defer t.poolMu.Unlock()
	t.tick++
	if pc, ok := t.pools[to.Ed25519]; ok && pc.addr == addr {
		pc.lastUsed = t.tick
		return pc, nil
	} else if ok {
		pc.closeIdle()
		delete(t.pools, to.Ed25519)
	}
	cert, err := t.clientCert()
	if err != nil {
		return nil, fmt.Errorf("%w: peer certificate: %v", peer.ErrUnreachable, err)
	}
	if len(t.pools) >= maxPeerClients {
		t.evictLocked()
	}
	want := ed25519.PublicKey(append([]byte(nil), to.Ed25519[:]...))
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// Resumption: a connection reopened after the idle timeout (or by
		// an onion relay that talks to a peer now and then) skips the
		// certificate signature and its check. The cache belongs to this
		// pool, so it only ever holds sessions with this identity, and
		// VerifyConnection still checks the key a resumed session carries.
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
		// Node certificates are self-signed: the chain proves nothing, the
		// key does. VerifyConnection replaces chain verification with "the
		// server holds the Ed25519 key the registry publishes for it".
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			got, err := identity.PeerKey(&cs)
			if err != nil {
				return fmt.Errorf("peer identity: %w", err)
			}
			if !got.Equal(want) {
				return fmt.Errorf("peer identity is %x, registry says %x", []byte(got), []byte(want))
			}
			return nil
		},
	}
	tc.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: maxConnsPerPeer,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		Protocols:           new(http.Protocols),
	}
	tr.Protocols.SetHTTP1(true)
	pc := &peerClient{addr: addr, lastUsed: t.tick, tr: tr, client: &http.Client{Transport: tr, CheckRedirect: noRedirect}}
	t.pools[to.Ed25519] = pc
	return pc, nil
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (t *Transport) evictLocked() {
	var oldest [32]byte
	var min uint64 = ^uint64(0)
	for k, pc := range t.pools {
		if pc.lastUsed < min {
			min, oldest = pc.lastUsed, k
		}
	}
	if pc, ok := t.pools[oldest]; ok {
		pc.closeIdle()
		delete(t.pools, oldest)
	}
}

// CloseIdleConnections drops every pooled connection (shutdown, tests).
func (t *Transport) CloseIdleConnections() {
	t.poolMu.Lock()
	defer t.poolMu.Unlock()
	for _, pc := range t.pools {
		pc.closeIdle()
	}
}

// ServeHTTP serves PathPrefix.
func (t *Transport) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		plain(w, http.StatusMethodNotAllowed, "peer commands are POST")
		return
	}
	from, err := identity.PeerKey(r.TLS)
	if err != nil {
		plain(w, http.StatusForbidden, "peer certificate required: "+err.Error())
		return
	}
	if t.cfg.Known == nil || !t.cfg.Known(from) {
		t.cfg.Logger.Debug("peer call from unknown node", "from", fmt.Sprintf("%x", []byte(from)), "remote", r.RemoteAddr)
		plain(w, http.StatusForbidden, "unknown service node")
		return
	}
	command := strings.TrimPrefix(r.URL.Path, PathPrefix)
	t.mu.RLock()
	h, ok := t.handlers[command]
	t.mu.RUnlock()
	if !ok && command != batchCommand {
		plain(w, http.StatusNotFound, "unknown peer command: "+command)
		return
	}
	if r.ContentLength > MaxBodyBytes {
		plain(w, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, MaxBodyBytes), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			plain(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		plain(w, http.StatusBadRequest, "read request body: "+err.Error())
		return
	}
	if command == batchCommand {
		t.serveBatch(w, r, from, body)
		return
	}
	reply := t.run(r.Context(), command, h, from, body)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(reply.Status)
	w.Write(reply.Body)
}

// run calls a handler, turning a panic or a missing status into a 500 so a
// bug in one command cannot take the listener down.
func (t *Transport) run(ctx context.Context, command string, h peer.Handler, from ed25519.PublicKey, body []byte) (reply peer.Reply) {
	defer func() {
		if v := recover(); v != nil {
			t.cfg.Logger.Error("peer command panicked", "command", command, "panic", fmt.Sprint(v))
			reply = peer.Reply{Status: http.StatusInternalServerError, Body: []byte("internal error")}
		}
	}()
	reply = h(ctx, from, body)
	if reply.Status < 100 || reply.Status > 999 {
		t.cfg.Logger.Error("peer command returned no valid status", "command", command, "status", reply.Status)
		reply = peer.Reply{Status: http.StatusInternalServerError, Body: []byte("internal error")}
	}
	return reply
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	io.WriteString(w, msg)
}
