// Package omqpeer is the peer transport over OxenMQ (package omq), the
// way upstream storage servers talk to each other: CURVE under each node's
// X25519 key, commands "sn.<command>" in a category only active service
// nodes may call. A call is the request [sn.<command>, tag, body],
// answered with [status, body].
//
// It also dispatches to HTTPS for peers that publish no OMQ port
// (snodebox devnets), so the swarm and onion code keep one Transport.
package omqpeer

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/omq"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

// Config is one node's OMQ peer side.
type Config struct {
	Keys *identity.Keys
	// ByX25519 finds a service node by the CURVE key it connected with (the
	// active set); a caller it does not find is refused (FORBIDDEN_SN).
	ByX25519 func(x [32]byte) (registry.Node, bool)
	// Fallback carries calls to peers without an OMQ port (nil: refused).
	Fallback peer.Transport
	Logger   *slog.Logger
}

// Transport sends over OMQ and serves "sn.*" on an OMQ listener.
type Transport struct {
	cfg    Config
	client *omq.Client
	mu     sync.Mutex
	cat    omq.Category
	server *omq.Server
}

// New returns the transport; its client identifies as the node's X25519
// key, so the far side can check the caller is a service node.
func New(cfg Config) *Transport {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Transport{cfg: cfg}
	t.client = &omq.Client{PublicKey: cfg.Keys.X25519Pub, SecretKey: cfg.Keys.X25519Priv, Log: cfg.Logger}
	t.cat = omq.Category{Access: omq.Access{Auth: omq.AuthNone, RemoteSN: true}, Requests: map[string]omq.RequestHandler{}}
	t.server = &omq.Server{
		PublicKey: cfg.Keys.X25519Pub, SecretKey: cfg.Keys.X25519Priv, LocalSN: true, Log: cfg.Logger,
		Categories: map[string]omq.Category{"sn": t.cat},
		IsServiceNode: func(x [32]byte) bool {
			_, ok := cfg.ByX25519(x)
			return ok
		},
	}
	return t
}

// Handle registers a command (peer.Mux).
func (t *Transport) Handle(command string, h peer.Handler) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cat.Requests[command] = func(ctx context.Context, m *omq.Message) [][]byte {
		n, _ := t.cfg.ByX25519(m.PubKey) // the category already required it
		var body []byte
		if len(m.Data) > 0 {
			body = m.Data[0]
		}
		r := run(ctx, h, ed25519.PublicKey(n.Ed25519[:]), body)
		return [][]byte{[]byte(strconv.Itoa(r.Status)), r.Body}
	}
}

func run(ctx context.Context, h peer.Handler, from ed25519.PublicKey, body []byte) (r peer.Reply) {
	defer func() {
		if p := recover(); p != nil {
			r = peer.Reply{Status: 500, Body: []byte(fmt.Sprint("internal error: ", p))}
		}
	}()
	return h(ctx, from, body)
}

// Serve answers peers on ln (TCP, CURVE) until ctx ends.
func (t *Transport) Serve(ctx context.Context, ln net.Listener) error {
	return t.server.Serve(ctx, ln)
}

// Call implements peer.Transport.
func (t *Transport) Call(ctx context.Context, to registry.Node, command string, body []byte) (peer.Reply, error) {
	if to.OMQPort == 0 {
		if t.cfg.Fallback != nil {
			return t.cfg.Fallback.Call(ctx, to, command, body)
		}
		return peer.Reply{}, fmt.Errorf("%w: %s publishes no OMQ port", peer.ErrUnreachable, to)
	}
	a := omq.Address{Network: "tcp", Addr: netip.AddrPortFrom(to.IP, to.OMQPort).String(), ServerKey: to.X25519}
	r, err := t.client.Request(ctx, a, "sn."+command, body)
	switch {
	case errors.Is(err, omq.ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
		return peer.Reply{}, fmt.Errorf("%w: %s %s: %v", peer.ErrTimeout, command, to, err)
	case err != nil:
		var re *omq.RemoteError
		if errors.As(err, &re) {
			return peer.Reply{Status: 403, Body: []byte(re.Error())}, nil
		}
		return peer.Reply{}, fmt.Errorf("%w: %s %s: %v", peer.ErrUnreachable, command, to, err)
	}
	if len(r) < 1 {
		return peer.Reply{}, fmt.Errorf("%w: %s %s: empty reply", peer.ErrUnreachable, command, to)
	}
	status, err := strconv.Atoi(string(r[0]))
	if err != nil {
		// Upstream answers some commands with the body alone.
		return peer.Reply{Status: 200, Body: r[0]}, nil
	}
	var b []byte
	if len(r) > 1 {
		b = r[1]
	}
	return peer.Reply{Status: status, Body: b}, nil
}

// Close drops the client's connections.
func (t *Transport) Close() { t.client.Close() }
