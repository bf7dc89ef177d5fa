// Package httpspeer is the peer transport over the node's HTTPS listener:
// POST /sn/v1/<command> with mutual TLS, where each node presents a
// self-signed certificate for its Ed25519 identity and the receiver checks
// that key against the registry.
package httpspeer

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

// PathPrefix is where peer commands are served.
const PathPrefix = "/sn/v1/"

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
}

var (
	_ peer.Transport = (*Transport)(nil)
	_ peer.Mux       = (*Transport)(nil)
)

// New makes a Transport.
func New(cfg Config) *Transport {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Transport{cfg: cfg, handlers: map[string]peer.Handler{}}
}

// Handle registers a command handler.
func (t *Transport) Handle(command string, h peer.Handler) {
	t.mu.Lock()
	t.handlers[command] = h
	t.mu.Unlock()
}

// Call sends a command to a peer.
func (t *Transport) Call(ctx context.Context, to registry.Node, command string, body []byte) (peer.Reply, error) {
	return peer.Reply{}, fmt.Errorf("%w: peer transport not built yet", peer.ErrUnreachable)
}

// ServeHTTP serves PathPrefix.
func (t *Transport) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "peer transport not built yet", http.StatusServiceUnavailable)
}
