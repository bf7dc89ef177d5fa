package omq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/snodebox/snodebox/netstack/omq/zmtp"
)

// Address is where a server listens: "tcp" with its CURVE key, or "unix"
// (NULL mechanism).
type Address struct {
	Network   string // "tcp" or "unix"
	Addr      string
	ServerKey [32]byte
}

func (a Address) String() string {
	if a.Network == "unix" {
		return "ipc://" + a.Addr
	}
	return fmt.Sprintf("curve://%s/%s", a.Addr, hex.EncodeToString(a.ServerKey[:]))
}

// Client makes requests to OxenMQ servers, one connection per address,
// reused and re-established with backoff when it breaks: the DEALER side.
type Client struct {
	// PublicKey and SecretKey identify us over CURVE (a service node uses
	// its X25519 key, so the far side can check the active set); zero
	// means a fresh ephemeral key pair.
	PublicKey, SecretKey [32]byte
	Timeout              time.Duration // per request (default 10 s)
	// RoutingID is sent as the ZMTP Identity: upstream service nodes use
	// "L" + their X25519 key on outgoing SN connections ("" = none).
	RoutingID string
	// Commands the server may send us (oxend's notify.block).
	Handlers map[string]func(data [][]byte)
	Log      *slog.Logger

	mu       sync.Mutex
	conns    map[Address]*clientConn
	failures map[Address]failure
	once     sync.Once
}

// failure is the backoff after failed connects: 100 ms doubling to 30 s.
type failure struct {
	n     int
	until time.Time
	err   error
}

func (f failure) next(err error) failure {
	d := 100 * time.Millisecond << min(f.n, 9)
	d = min(d, 30*time.Second)
	return failure{n: f.n + 1, until: time.Now().Add(d), err: err}
}

type clientConn struct {
	cl      *Client
	addr    Address
	mu      sync.Mutex
	c       *zmtp.Conn
	pending map[string]chan reply
	hello   chan struct{}
	dead    chan struct{}
	err     error
}

type reply struct {
	parts [][]byte
	err   error
}

func (cl *Client) init() {
	cl.once.Do(func() {
		if cl.PublicKey == ([32]byte{}) {
			p, s, _ := box.GenerateKey(rand.Reader)
			cl.PublicKey, cl.SecretKey = *p, *s
		}
		cl.conns = map[Address]*clientConn{}
		cl.failures = map[Address]failure{}
		if cl.Log == nil {
			cl.Log = slog.New(slog.DiscardHandler)
		}
	})
}

func (cl *Client) timeout() time.Duration {
	if cl.Timeout > 0 {
		return cl.Timeout
	}
	return 10 * time.Second
}

// conn returns a live connection to a, dialling (and saying HI) when there
// is none.
func (cl *Client) conn(ctx context.Context, a Address) (*clientConn, error) {
	cl.init()
	cl.mu.Lock()
	cc := cl.conns[a]
	if cc != nil {
		select {
		case <-cc.dead:
			delete(cl.conns, a)
			cc = nil
		default:
		}
	}
	if cc != nil {
		cl.mu.Unlock()
		return cc, nil
	}
	if f, ok := cl.failures[a]; ok && time.Now().Before(f.until) {
		cl.mu.Unlock()
		return nil, fmt.Errorf("omq %s: not retrying for %s after: %w", a, time.Until(f.until).Round(time.Millisecond), f.err)
	}
	cl.mu.Unlock()
	cc, err := cl.dial(ctx, a)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if err != nil {
		cl.failures[a] = cl.failures[a].next(err)
		return nil, err
	}
	delete(cl.failures, a)
	if old := cl.conns[a]; old != nil {
		select {
		case <-old.dead:
		default:
			cc.c.Close() // lost a race; use the other one
			return old, nil
		}
	}
	cl.conns[a] = cc
	return cc, nil
}

func (cl *Client) dial(ctx context.Context, a Address) (*clientConn, error) {
	d := net.Dialer{Timeout: cl.timeout()}
	nc, err := d.DialContext(ctx, a.Network, a.Addr)
	if err != nil {
		return nil, fmt.Errorf("omq connect %s: %w", a, err)
	}
	md := zmtp.Metadata{"Socket-Type": "DEALER"}
	if cl.RoutingID != "" {
		md["Identity"] = cl.RoutingID
	}
	cfg := zmtp.Config{Mechanism: zmtp.Curve, PublicKey: cl.PublicKey, SecretKey: cl.SecretKey, ServerKey: a.ServerKey, Metadata: md, HandshakeTimeout: cl.timeout()}
	if a.Network == "unix" {
		cfg = zmtp.Config{Mechanism: zmtp.Null, Metadata: md, HandshakeTimeout: cl.timeout()}
	}
	c, err := zmtp.Handshake(nc, cfg)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("omq connect %s: %w", a, err)
	}
	cc := &clientConn{cl: cl, addr: a, c: c, pending: map[string]chan reply{}, hello: make(chan struct{}), dead: make(chan struct{})}
	go cc.read()
	if err := c.Send([]byte(cmdHi)); err != nil {
		c.Close()
		return nil, err
	}
	select {
	case <-cc.hello:
	case <-cc.dead:
		return nil, fmt.Errorf("omq connect %s: %w", a, cc.err)
	case <-time.After(cl.timeout()):
		c.Close()
		return nil, fmt.Errorf("omq connect %s: no HELLO: %w", a, ErrTimeout)
	case <-ctx.Done():
		c.Close()
		return nil, ctx.Err()
	}
	return cc, nil
}

func (cc *clientConn) read() {
	var err error
	defer func() {
		cc.mu.Lock()
		cc.err = err
		for tag, ch := range cc.pending {
			ch <- reply{err: fmt.Errorf("omq %s: connection lost: %w", cc.addr, err)}
			delete(cc.pending, tag)
		}
		cc.mu.Unlock()
		close(cc.dead)
	}()
	helloSeen := false
	for {
		var parts [][]byte
		parts, err = cc.c.Recv()
		if err != nil {
			return
		}
		cmd := string(parts[0])
		switch {
		case cmd == cmdHello:
			if !helloSeen {
				helloSeen = true
				close(cc.hello)
			}
		case cmd == cmdReply && len(parts) >= 2:
			cc.deliver(string(parts[1]), reply{parts: parts[2:]})
		case isErrorReply(cmd):
			if len(parts) == 3 && string(parts[1]) == cmdReply {
				cc.deliver(string(parts[2]), reply{err: &RemoteError{Code: cmd}})
			} else {
				what := ""
				if len(parts) > 1 {
					what = string(parts[1])
				}
				cc.cl.Log.Warn("omq refusal", "from", cc.addr.String(), "code", cmd, "command", what)
			}
		default:
			if h := cc.cl.Handlers[cmd]; h != nil {
				go h(parts[1:])
			}
		}
	}
}

func (cc *clientConn) deliver(tag string, r reply) {
	cc.mu.Lock()
	ch := cc.pending[tag]
	delete(cc.pending, tag)
	cc.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// Request sends [cmd, tag, data…] and waits for the reply's parts.
func (cl *Client) Request(ctx context.Context, a Address, cmd string, data ...[]byte) ([][]byte, error) {
	cc, err := cl.conn(ctx, a)
	if err != nil {
		return nil, err
	}
	tagb := make([]byte, 15) // OxenMQ's reply tags are 15 random bytes
	rand.Read(tagb)
	tag := string(tagb)
	ch := make(chan reply, 1)
	cc.mu.Lock()
	cc.pending[tag] = ch
	cc.mu.Unlock()
	if err := cc.c.Send(append([][]byte{[]byte(cmd), tagb}, data...)...); err != nil {
		cc.c.Close()
		return nil, err
	}
	t := time.NewTimer(cl.timeout())
	defer t.Stop()
	select {
	case r := <-ch:
		if re, ok := r.err.(*RemoteError); ok {
			re.Command = cmd
		}
		return r.parts, r.err
	case <-t.C:
		cc.deliver(tag, reply{})
		return nil, fmt.Errorf("%s to %s: %w", cmd, a, ErrTimeout)
	case <-ctx.Done():
		cc.deliver(tag, reply{})
		return nil, ctx.Err()
	}
}

// Send sends a command that has no reply.
func (cl *Client) Send(ctx context.Context, a Address, cmd string, data ...[]byte) error {
	cc, err := cl.conn(ctx, a)
	if err != nil {
		return err
	}
	return cc.c.Send(append([][]byte{[]byte(cmd)}, data...)...)
}

// Close closes every connection.
func (cl *Client) Close() {
	cl.init()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for a, cc := range cl.conns {
		cc.c.Close()
		delete(cl.conns, a)
	}
}
