// Package omqpeer is the peer transport over OxenMQ (package omq), the
// way upstream storage servers talk to each other: CURVE under each node's
// X25519 key, commands "sn.<command>" in a category only active service
// nodes may call, with upstream's message parts:
//
//	sn.storage_cc   [method, bt-params] → [body] when OK, else [status, body]
//	sn.data         [blob]              → []
//	sn.ping         []                  → ["pong"]
//	sn.onion_request [bt-data]          → [status, body]
//	sn.data_ready   [body]              → [status, body] (snodebox's own)
//
// The storage code's storage_cc body is the bencoded list [method,
// params]; it is split into the two parts on the wire and joined again on
// arrival.
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

	"github.com/snodebox/snodebox/netstack/bencode"
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
	// ClientRPC, when set, serves storage.<method> to anyone (spec §1.2):
	// the one request part is the method's JSON params; the answer is
	// [body] on success, else [status, text].
	ClientRPC func(ctx context.Context, method string, params []byte) (status int, body []byte)
	// ClientMethods are the method names ClientRPC serves.
	ClientMethods []string
	Logger        *slog.Logger
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
	t.client = &omq.Client{PublicKey: cfg.Keys.X25519Pub, SecretKey: cfg.Keys.X25519Priv, Log: cfg.Logger,
		RoutingID: "L" + string(cfg.Keys.X25519Pub[:])}
	t.cat = omq.Category{Access: omq.Access{Auth: omq.AuthNone, RemoteSN: true}, Requests: map[string]omq.RequestHandler{}}
	cats := map[string]omq.Category{"sn": t.cat}
	if cfg.ClientRPC != nil {
		st := omq.Category{Access: omq.Access{Auth: omq.AuthNone}, Requests: map[string]omq.RequestHandler{}}
		for _, m := range cfg.ClientMethods {
			method := m
			st.Requests[method] = func(ctx context.Context, msg *omq.Message) [][]byte {
				var params []byte
				switch len(msg.Data) {
				case 0:
				case 1:
					params = msg.Data[0]
				default:
					return [][]byte{[]byte("400"), []byte(fmt.Sprintf("Invalid request: expected 1 message part, received %d", len(msg.Data)))}
				}
				if len(params) > 0 && params[0] == 'd' {
					return [][]byte{[]byte("400"), []byte("bt-encoded storage requests over OMQ are not supported here; send JSON params")}
				}
				status, body := cfg.ClientRPC(ctx, method, params)
				if status == 200 {
					return [][]byte{body}
				}
				return [][]byte{[]byte(strconv.Itoa(status)), body}
			}
		}
		cats["storage"] = st
	}
	t.server = &omq.Server{
		PublicKey: cfg.Keys.X25519Pub, SecretKey: cfg.Keys.X25519Priv, LocalSN: true, Log: cfg.Logger,
		Categories: cats,
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
		body, err := joinParts(command, m.Data)
		if err != nil {
			return [][]byte{[]byte("400"), []byte(err.Error())}
		}
		r := run(ctx, h, ed25519.PublicKey(n.Ed25519[:]), body)
		return replyParts(command, r)
	}
}

// splitBody turns a call's body into upstream's request parts. A
// storage_cc body is the bt list [method, params]; its params go out as
// the bytes they arrived in.
func splitBody(command string, body []byte) ([][]byte, error) {
	switch command {
	case peer.CmdStorageCC:
		l, err := bencode.SplitList(body)
		if err != nil || len(l) != 2 {
			return nil, fmt.Errorf("storage_cc body is not [method, params]")
		}
		method, err := bencode.Unmarshal(l[0])
		if _, isStr := method.([]byte); err != nil || !isStr {
			return nil, fmt.Errorf("storage_cc method is not a string")
		}
		return [][]byte{method.([]byte), l[1]}, nil
	case peer.CmdPing:
		return nil, nil
	}
	return [][]byte{body}, nil
}

// joinParts turns upstream's request parts back into the handler's body.
func joinParts(command string, parts [][]byte) ([]byte, error) {
	switch command {
	case peer.CmdStorageCC:
		if len(parts) != 2 {
			return nil, fmt.Errorf("Invalid request: expected 2 message parts, received %d", len(parts))
		}
		if err := bencode.Valid(parts[1]); err != nil {
			return nil, fmt.Errorf("Invalid request: params: %v", err)
		}
		method, params := parts[0], parts[1]
		b := make([]byte, 0, len(method)+len(params)+16)
		b = append(b, 'l')
		b = strconv.AppendInt(b, int64(len(method)), 10)
		b = append(b, ':')
		b = append(b, method...)
		b = append(b, params...)
		return append(b, 'e'), nil
	case peer.CmdPing:
		return nil, nil
	}
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b, nil
}

// replyParts is a handler's reply in upstream's parts.
func replyParts(command string, r peer.Reply) [][]byte {
	ok := r.Status == 200
	switch {
	case command == peer.CmdStorageCC && ok, command == peer.CmdPing && ok:
		return [][]byte{r.Body}
	case command == peer.CmdData && ok:
		return nil
	}
	return [][]byte{[]byte(strconv.Itoa(r.Status)), r.Body}
}

// readReply reads upstream's reply parts.
func readReply(command string, r [][]byte) (peer.Reply, error) {
	switch {
	case len(r) == 0:
		return peer.Reply{Status: 200}, nil
	case len(r) == 1:
		return peer.Reply{Status: 200, Body: r[0]}, nil
	}
	status, err := strconv.Atoi(string(r[0]))
	if err != nil || status < 100 || status > 599 {
		return peer.Reply{}, fmt.Errorf("%s reply: status %q", command, r[0])
	}
	return peer.Reply{Status: status, Body: r[1]}, nil
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
	parts, err := splitBody(command, body)
	if err != nil {
		return peer.Reply{}, err
	}
	r, err := t.client.Request(ctx, a, "sn."+command, parts...)
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
	rep, err := readReply(command, r)
	if err != nil {
		return peer.Reply{}, fmt.Errorf("%w: %s: %v", peer.ErrUnreachable, to, err)
	}
	return rep, nil
}

// Close drops the client's connections.
func (t *Transport) Close() { t.client.Close() }
