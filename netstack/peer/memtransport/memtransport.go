// Package memtransport is an in-process peer transport for unit tests: a
// Network of Endpoints, each a peer.Transport and peer.Mux named by an
// Ed25519 key, so swarm and onion code can talk node to node without TLS or
// sockets. It keeps the HTTPS transport's semantics that callers depend on:
// bodies are copied (no aliasing between nodes), an unknown or downed node
// is peer.ErrUnreachable, a context deadline is peer.ErrTimeout, a caller the
// receiver does not know gets 403, an unknown command 404, a panicking or
// status-less handler 500.
package memtransport

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

// Network connects Endpoints by their Ed25519 keys.
type Network struct {
	mu    sync.RWMutex
	nodes map[[32]byte]*Endpoint
	down  map[[32]byte]bool
}

// NewNetwork makes an empty network.
func NewNetwork() *Network {
	return &Network{nodes: map[[32]byte]*Endpoint{}, down: map[[32]byte]bool{}}
}

// Endpoint is one node's view of the network.
type Endpoint struct {
	net  *Network
	self [32]byte

	mu       sync.RWMutex
	handlers map[string]peer.Handler
	known    func(ed ed25519.PublicKey) bool
	calls    map[string]int
}

var (
	_ peer.Transport = (*Endpoint)(nil)
	_ peer.Mux       = (*Endpoint)(nil)
)

// Join adds (or returns the existing) endpoint for the node with Ed25519 key
// self.
func (n *Network) Join(self [32]byte) *Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e, ok := n.nodes[self]; ok {
		return e
	}
	e := &Endpoint{net: n, self: self, handlers: map[string]peer.Handler{}, calls: map[string]int{}}
	n.nodes[self] = e
	return e
}

// Leave removes a node; calls to it fail with peer.ErrUnreachable.
func (n *Network) Leave(ed [32]byte) {
	n.mu.Lock()
	delete(n.nodes, ed)
	delete(n.down, ed)
	n.mu.Unlock()
}

// SetDown makes a node unreachable (true) or reachable again (false) without
// forgetting its handlers, like a board that lost its link.
func (n *Network) SetDown(ed [32]byte, down bool) {
	n.mu.Lock()
	if down {
		n.down[ed] = true
	} else {
		delete(n.down, ed)
	}
	n.mu.Unlock()
}

func (n *Network) endpoint(ed [32]byte) (*Endpoint, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	e, ok := n.nodes[ed]
	if !ok {
		return nil, fmt.Errorf("%w: no node %x on the in-memory network", peer.ErrUnreachable, ed[:6])
	}
	if n.down[ed] {
		return nil, fmt.Errorf("%w: node %x is down", peer.ErrUnreachable, ed[:6])
	}
	return e, nil
}

// Self is the endpoint's Ed25519 key.
func (e *Endpoint) Self() [32]byte { return e.self }

// SetKnown installs the receiver-side check of callers (as httpspeer's
// Config.Known); nil accepts everyone.
func (e *Endpoint) SetKnown(known func(ed ed25519.PublicKey) bool) {
	e.mu.Lock()
	e.known = known
	e.mu.Unlock()
}

// Handle implements peer.Mux.
func (e *Endpoint) Handle(command string, h peer.Handler) {
	e.mu.Lock()
	e.handlers[command] = h
	e.mu.Unlock()
}

// Served counts the calls this endpoint has served for a command (tests use
// it to see where traffic went).
func (e *Endpoint) Served(command string) int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.calls[command]
}

// Call implements peer.Transport. The handler runs in its own goroutine so a
// caller whose context ends gets peer.ErrTimeout even if the handler hangs.
func (e *Endpoint) Call(ctx context.Context, to registry.Node, command string, body []byte) (peer.Reply, error) {
	if err := ctx.Err(); err != nil {
		return peer.Reply{}, ctxErr(to, err)
	}
	dst, err := e.net.endpoint(to.Ed25519)
	if err != nil {
		return peer.Reply{}, err
	}
	dst.mu.Lock()
	h, ok := dst.handlers[command]
	known := dst.known
	if ok {
		dst.calls[command]++
	}
	dst.mu.Unlock()

	from := ed25519.PublicKey(append([]byte(nil), e.self[:]...))
	if known != nil && !known(from) {
		return peer.Reply{Status: http.StatusForbidden, Body: []byte("unknown service node")}, nil
	}
	if !ok {
		return peer.Reply{Status: http.StatusNotFound, Body: []byte("unknown peer command: " + command)}, nil
	}
	in := append([]byte(nil), body...)
	done := make(chan peer.Reply, 1)
	go func() {
		done <- serve(ctx, h, from, in)
	}()
	select {
	case r := <-done:
		return r, nil
	case <-ctx.Done():
		return peer.Reply{}, ctxErr(to, ctx.Err())
	}
}

func ctxErr(to registry.Node, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s: %v", peer.ErrTimeout, to, err)
	}
	return fmt.Errorf("%w: %s: %v", peer.ErrUnreachable, to, err)
}

// serve runs a handler as httpspeer's server does: a panic or a missing
// status becomes a 500 instead of crashing the test binary.
func serve(ctx context.Context, h peer.Handler, from ed25519.PublicKey, body []byte) (r peer.Reply) {
	defer func() {
		if v := recover(); v != nil {
			r = peer.Reply{Status: http.StatusInternalServerError, Body: []byte("internal error")}
		}
	}()
	r = h(ctx, from, body)
	if r.Status < 100 || r.Status > 999 {
		return peer.Reply{Status: http.StatusInternalServerError, Body: []byte("internal error")}
	}
	r.Body = append([]byte(nil), r.Body...)
	return r
}
