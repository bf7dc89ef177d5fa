// Package onion implements onion requests (spec §8): peeling one layer with
// the node's X25519 key, and acting on it as final destination, proxy to an
// HTTP server, or relay to the next node.
package onion

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/http"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

// RPC runs a storage RPC request at the final destination.
type RPC interface {
	Invoke(ctx context.Context, body []byte) (status int, out []byte, isJSON bool)
}

// Config wires a Handler.
type Config struct {
	Keys      *identity.Keys
	RPC       RPC
	Transport peer.Transport
	// Lookup finds the next hop by Ed25519 key (registry or static peers).
	Lookup func(ed [32]byte) (registry.Node, bool)
	// NotReady returns why the node cannot serve yet; nil when ready.
	NotReady func() []string
	// AllowPrivateProxy lets proxy requests reach loopback/private/link-local
	// addresses (devnets and tests only).
	AllowPrivateProxy bool
	Logger            *slog.Logger
}

// Handler serves POST /onion_req/v2 and the sn onion_request peer command.
type Handler struct {
	cfg Config
}

// New makes a Handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Handler{cfg: cfg}
}

// ServeHTTP serves POST /onion_req/v2.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "onion requests not built yet", http.StatusServiceUnavailable)
}

// HandlePeer serves the onion_request peer command (spec §8.6).
func (h *Handler) HandlePeer(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
	return peer.Reply{Status: http.StatusServiceUnavailable, Body: []byte("onion requests not built yet")}
}
