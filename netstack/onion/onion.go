// Package onion implements onion requests (spec §8): peeling one layer with
// the node's X25519 key, and acting on it as final destination, proxy to an
// HTTP server, or relay to the next node.
package onion

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/onion/onionreq"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

// Limits of spec §12 and our own proxy bounds.
const (
	MaxBodyBytes     = 10 << 20 // entry request body
	HopTimeout       = 30 * time.Second
	ProxyTimeout     = 25 * time.Second
	MaxProxyReply    = 10 << 20
	MaxProxyInFlight = 64
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
	cfg        Config
	priv       *ecdh.PrivateKey
	keyErr     error
	edHex      string
	proxy      *proxy
	hopTimeout time.Duration
	stats      counters
}

// Stats counts what the handler has done since start (for the status page).
type Stats struct {
	Entry   uint64 `json:"entry"`   // requests on /onion_req/v2
	Hops    uint64 `json:"hops"`    // requests from other nodes (sn.onion_request)
	Final   uint64 `json:"final"`   // layers that ran the storage RPC here
	Relayed uint64 `json:"relayed"` // layers sent on to the next node
	Proxied uint64 `json:"proxied"` // layers forwarded to HTTP servers
	Refused uint64 `json:"refused"` // undecryptable, malformed, over-long, not ready, bad inner JSON/URL
	Failed  uint64 `json:"failed"`  // next node or server unreachable, timed out, or busy
}

type counters struct {
	entry, hops, final, relayed, proxied, refused, failed atomic.Uint64
}

// Stats returns the handler's counters.
func (h *Handler) Stats() Stats {
	c := &h.stats
	return Stats{Entry: c.entry.Load(), Hops: c.hops.Load(), Final: c.final.Load(), Relayed: c.relayed.Load(),
		Proxied: c.proxied.Load(), Refused: c.refused.Load(), Failed: c.failed.Load()}
}

// New makes a Handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, proxy: newProxy(cfg.AllowPrivateProxy, ProxyTimeout, MaxProxyInFlight), hopTimeout: HopTimeout}
	if cfg.Keys == nil {
		h.keyErr = errors.New("no node keys")
		return h
	}
	h.edHex = cfg.Keys.Ed25519Hex()
	// Parsed once: X25519 with a ready key is the whole per-hop key cost.
	h.priv, h.keyErr = ecdh.X25519().NewPrivateKey(cfg.Keys.X25519Priv[:])
	return h
}

// result is a hop's answer before it goes on the wire.
type result struct {
	status int
	body   []byte
	ctype  string
	// outcome is what this node did, for Stats.
	outcome *atomic.Uint64
}

func (h *Handler) tally(res result) {
	if res.outcome != nil {
		res.outcome.Add(1)
	} else {
		h.stats.refused.Add(1)
	}
}

func (r result) as(outcome *atomic.Uint64) result {
	r.outcome = outcome
	return r
}

func plain(status int, msg string) result {
	return result{status: status, body: []byte(msg), ctype: "text/plain"}
}

// ServeHTTP serves POST /onion_req/v2.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.stats.entry.Add(1)
	res := h.serveEntry(r)
	h.tally(res)
	if res.ctype != "" {
		w.Header().Set("Content-Type", res.ctype)
	}
	w.WriteHeader(res.status)
	w.Write(res.body)
}

func (h *Handler) serveEntry(r *http.Request) result {
	if r.Method != http.MethodPost {
		return plain(http.StatusMethodNotAllowed, "onion requests are POST")
	}
	if r.ContentLength > MaxBodyBytes {
		return plain(http.StatusRequestEntityTooLarge, "Request body too large")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return plain(http.StatusBadRequest, "read request body: "+err.Error())
	}
	if len(body) > MaxBodyBytes {
		return plain(http.StatusRequestEntityTooLarge, "Request body too large")
	}
	if h.keyErr == nil && h.cfg.NotReady != nil {
		// §1.1: the HTTPS endpoint's readiness check answers first, with
		// the reasons, as /storage_rpc/v1 does; hops that arrive from other
		// nodes get §8.3's "Snode not ready: <ed25519>".
		if reasons := h.cfg.NotReady(); reasons != nil {
			return plain(http.StatusServiceUnavailable, "Service node is not ready: "+strings.Join(reasons, "; ")+"\n")
		}
	}
	if res, ok := h.notReady(); !ok {
		return res
	}
	req, err := onionreq.ParseEntry(body)
	if err != nil {
		h.cfg.Logger.Debug("bad onion request", "remote", r.RemoteAddr, "err", err)
		return plain(http.StatusBadRequest, "Invalid onion request: "+err.Error())
	}
	return h.process(r.Context(), req)
}

// HandlePeer serves the onion_request peer command (spec §8.6).
func (h *Handler) HandlePeer(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
	h.stats.hops.Add(1)
	res := h.handlePeer(ctx, body)
	h.tally(res)
	return peer.Reply{Status: res.status, Body: res.body}
}

func (h *Handler) handlePeer(ctx context.Context, body []byte) result {
	if res, ok := h.notReady(); !ok {
		return res
	}
	req, err := onionreq.ParsePeer(body)
	if err != nil {
		return plain(http.StatusBadRequest, "Invalid onion request: "+err.Error())
	}
	if req.HopNo > onionreq.MaxHops {
		return plain(http.StatusBadRequest, "onion request max path length exceeded")
	}
	return h.process(ctx, req)
}

func (h *Handler) notReady() (result, bool) {
	if h.keyErr != nil {
		return plain(http.StatusServiceUnavailable, "Snode not ready: "+h.keyErr.Error()), false
	}
	if h.cfg.NotReady != nil {
		if reasons := h.cfg.NotReady(); reasons != nil {
			return plain(http.StatusServiceUnavailable, "Snode not ready: "+h.edHex), false
		}
	}
	return result{}, true
}

// process peels one layer and acts on it (spec §8.3).
func (h *Handler) process(ctx context.Context, req onionreq.Request) result {
	c, err := onionreq.NodeCipher(req.EncType, h.priv, req.EphemeralKey[:])
	if err != nil {
		return plain(http.StatusBadRequest, "Invalid ciphertext")
	}
	// Opened with headroom so a relay can frame the next hop's body around
	// the blob without copying it.
	full, err := c.OpenAppend(make([]byte, onionreq.Headroom, onionreq.Headroom+len(req.Ciphertext)+128), req.Ciphertext)
	if err != nil {
		return plain(http.StatusBadRequest, "Invalid ciphertext")
	}
	in, err := onionreq.ParseInner(full[onionreq.Headroom:])
	if err != nil {
		wire := onionreq.ErrInvalidJSON
		if errors.Is(err, onionreq.ErrInvalidURL) {
			wire = onionreq.ErrInvalidURL
		}
		h.cfg.Logger.Debug("bad onion layer", "err", err)
		return h.sealed(c, http.StatusBadRequest, mustJSON(wire.Error()), true).as(&h.stats.refused)
	}
	switch in.Kind {
	case onionreq.Final:
		return h.final(ctx, c, in).as(&h.stats.final)
	case onionreq.Server:
		u, err := in.URL()
		if err != nil {
			h.cfg.Logger.Debug("refused onion proxy url", "err", err)
			return h.sealed(c, http.StatusBadRequest, mustJSON(onionreq.ErrInvalidURL.Error()), true).as(&h.stats.refused)
		}
		res, ok := h.proxy.do(ctx, u, in.Plaintext, h.cfg.Logger)
		if !ok {
			return res.as(&h.stats.failed)
		}
		return res.as(&h.stats.proxied)
	default:
		return h.relay(ctx, req.HopNo, in, full)
	}
}

// final runs the RPC and seals {"status","body"} for the client (§8.4).
func (h *Handler) final(ctx context.Context, c *onionreq.Cipher, in onionreq.Inner) result {
	if h.cfg.RPC == nil {
		return h.sealed(c, http.StatusServiceUnavailable, mustJSON("Snode not ready: "+h.edHex), in.Base64)
	}
	status, out, isJSON := h.cfg.RPC.Invoke(ctx, in.Blob)
	body := json.RawMessage(out)
	if !(in.JSON && isJSON && json.Valid(out)) {
		body = mustJSON(string(out))
	}
	return h.sealed(c, status, body, in.Base64)
}

// sealed encrypts {"status": status, "body": body} with the layer's key.
func (h *Handler) sealed(c *onionreq.Cipher, status int, body json.RawMessage, b64 bool) result {
	msg := responseJSON(status, body)
	ct, err := c.Seal(msg)
	if err != nil {
		h.cfg.Logger.Error("seal onion response", "err", err)
		return plain(http.StatusInternalServerError, "Internal error")
	}
	if !b64 {
		return result{status: http.StatusOK, body: ct, ctype: "application/octet-stream"}
	}
	out := make([]byte, base64.StdEncoding.EncodedLen(len(ct)))
	base64.StdEncoding.Encode(out, ct)
	return result{status: http.StatusOK, body: out, ctype: "text/plain"}
}

// responseJSON is json.Marshal of {"status": status, "body": body} written
// by hand around the body, which is valid JSON (checked or built by the
// caller): json.Marshal of a RawMessage re-scans it to compact it, a second
// full pass over a retrieve answer. HTMLEscape keeps the bytes json.Marshal
// wrote ('<', '>', '&', U+2028 and U+2029 escaped inside strings).
func responseJSON(status int, body json.RawMessage) []byte {
	msg := make([]byte, 0, len(body)+32)
	msg = append(msg, `{"status":`...)
	msg = strconv.AppendInt(msg, int64(status), 10)
	msg = append(msg, `,"body":`...)
	if bytes.ContainsAny(body, "<>&\u2028\u2029") {
		var esc bytes.Buffer
		json.HTMLEscape(&esc, body)
		msg = append(msg, esc.Bytes()...)
	} else {
		msg = append(msg, body...)
	}
	return append(msg, '}')
}

func mustJSON(s string) json.RawMessage {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}

// relay sends the next layer over the peer transport (§8.6) and passes the
// answer back unchanged.
func (h *Handler) relay(ctx context.Context, hopNo int, in onionreq.Inner, full []byte) result {
	destHex := hex.EncodeToString(in.Destination[:])
	if h.cfg.Lookup == nil || h.cfg.Transport == nil {
		return plain(http.StatusBadGateway, "Next node not found: "+destHex).as(&h.stats.failed)
	}
	next, ok := h.cfg.Lookup(in.Destination)
	if !ok {
		return plain(http.StatusBadGateway, "Next node not found: "+destHex).as(&h.stats.failed)
	}
	body := onionreq.RelayBody(full, in, hopNo+1)
	ctx, cancel := context.WithTimeout(ctx, h.hopTimeout)
	defer cancel()
	reply, err := h.cfg.Transport.Call(ctx, next, peer.CmdOnionRequest, body)
	switch {
	case errors.Is(err, peer.ErrTimeout):
		return plain(http.StatusGatewayTimeout, "Request time out").as(&h.stats.failed)
	case err != nil:
		h.cfg.Logger.Debug("onion next hop unreachable", "next", next.String(), "err", err)
		return plain(http.StatusBadGateway, "Next node is currently unreachable: "+destHex).as(&h.stats.failed)
	}
	return result{status: reply.Status, body: reply.Body, outcome: &h.stats.relayed}
}
