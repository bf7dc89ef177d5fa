// Package onionclient builds onion requests for a path of service nodes
// (spec §8.5), sends them to the first hop's /onion_req/v2 and reads the
// destination's encrypted answer: the client side of netstack/onion, for
// snodectl, devnet checks and end-to-end tests.
package onionclient

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/onion/onionreq"
	"github.com/snodebox/snodebox/netstack/registry"
)

// Server is an HTTP(S) server as an onion destination (§8.3 case 2).
type Server struct {
	Host     string
	Target   string // /oxen/…/lsrpc or /loki/…/lsrpc
	Port     int    // 0 = protocol default
	Protocol string // "https" (default) or "http"
	X25519   [32]byte
}

// Onion is a built request: the body for the first hop and the key that
// reads the destination's answer.
type Onion struct {
	Body   []byte
	First  registry.Node
	reply  *onionreq.Cipher
	server bool
}

// Build layers payload (a storage RPC JSON body) for path; the last node is
// the destination.
func Build(path []registry.Node, payload []byte, enc onionreq.EncType) (*Onion, error) {
	if len(path) == 0 {
		return nil, errors.New("onion path is empty")
	}
	dest := path[len(path)-1]
	layer, ek, c, err := seal(enc, dest.X25519, onionreq.Frame(payload, []byte(`{"headers":""}`)))
	if err != nil {
		return nil, fmt.Errorf("destination layer: %w", err)
	}
	return wrap(path[:len(path)-1], dest.Ed25519, layer, ek, c, enc, false)
}

// BuildToServer layers payload for an HTTP server reached through path (the
// last node proxies). payload is encrypted for the server's X25519 key as-is
// (no frame), as v3/v4 lsrpc servers expect.
func BuildToServer(path []registry.Node, srv Server, payload []byte, enc onionreq.EncType) (*Onion, error) {
	if len(path) == 0 {
		return nil, errors.New("onion path is empty")
	}
	inner, ek, c, err := seal(enc, srv.X25519, payload)
	if err != nil {
		return nil, fmt.Errorf("server layer: %w", err)
	}
	proto, port := srv.Protocol, srv.Port
	if proto == "" {
		proto = "https"
	}
	if port == 0 {
		port = 443
		if proto == "http" {
			port = 80
		}
	}
	route, err := json.Marshal(map[string]any{
		"host": srv.Host, "target": srv.Target, "method": "POST", "protocol": proto, "port": port,
		"ephemeral_key": hex.EncodeToString(ek[:]), "enc_type": enc.String(),
	})
	if err != nil {
		return nil, err
	}
	last := path[len(path)-1]
	layer, lek, _, err := seal(enc, last.X25519, onionreq.Frame(inner, route))
	if err != nil {
		return nil, fmt.Errorf("proxy layer: %w", err)
	}
	return wrap(path[:len(path)-1], last.Ed25519, layer, lek, c, enc, true)
}

// wrap adds the relay layers of hops (outermost first) around layer, which
// is sealed for the node next.
func wrap(hops []registry.Node, next [32]byte, layer []byte, ek [32]byte, reply *onionreq.Cipher, enc onionreq.EncType, server bool) (*Onion, error) {
	first := next
	for i := len(hops) - 1; i >= 0; i-- {
		route, err := json.Marshal(map[string]string{
			"destination":   hex.EncodeToString(next[:]),
			"ephemeral_key": hex.EncodeToString(ek[:]),
			"enc_type":      enc.String(),
		})
		if err != nil {
			return nil, err
		}
		layer, ek, _, err = seal(enc, hops[i].X25519, onionreq.Frame(layer, route))
		if err != nil {
			return nil, fmt.Errorf("hop %d layer: %w", i, err)
		}
		next = hops[i].Ed25519
		first = next
	}
	o := &Onion{reply: reply, server: server}
	o.Body = onionreq.Request{Ciphertext: layer, EphemeralKey: ek, EncType: enc}.AppendEntry()
	o.First.Ed25519 = first
	return o, nil
}

// seal encrypts pt for a node's X25519 key with a fresh ephemeral key.
func seal(enc onionreq.EncType, to [32]byte, pt []byte) (ct []byte, ek [32]byte, c *onionreq.Cipher, err error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, ek, nil, err
	}
	c, err = onionreq.ClientCipher(enc, priv, to[:])
	if err != nil {
		return nil, ek, nil, err
	}
	ct, err = c.Seal(pt)
	if err != nil {
		return nil, ek, nil, err
	}
	copy(ek[:], priv.PublicKey().Bytes())
	return ct, ek, c, nil
}

// Response is the destination's answer.
type Response struct {
	// Status is the RPC status from {"status"} (node destinations) or the
	// server's HTTP status (server destinations).
	Status int
	// Body is the RPC body: a JSON result or a plain string, unquoted; for
	// servers, the decrypted reply bytes.
	Body []byte
}

// PathError is an answer that did not come from the destination: a hop (or
// the destination before decrypting) answered with a plain error.
type PathError struct {
	Status int
	Body   string
}

func (e *PathError) Error() string {
	return fmt.Sprintf("onion path answered %d: %s", e.Status, e.Body)
}

// Decode reads the first hop's HTTP answer.
func (o *Onion) Decode(status int, body []byte) (Response, error) {
	if status != http.StatusOK {
		return Response{}, &PathError{Status: status, Body: string(body)}
	}
	pt, err := o.open(body)
	if err != nil {
		return Response{}, err
	}
	if o.server {
		return Response{Status: status, Body: pt}, nil
	}
	var env struct {
		Status     *int            `json:"status"`
		StatusCode *int            `json:"status_code"`
		Body       json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal(pt, &env); err != nil {
		return Response{}, fmt.Errorf("destination answer is not {status, body}: %w", err)
	}
	r := Response{Body: env.Body}
	switch {
	case env.Status != nil:
		r.Status = *env.Status
	case env.StatusCode != nil:
		r.Status = *env.StatusCode
	default:
		return Response{}, errors.New("destination answer has no status")
	}
	var s string
	if len(env.Body) > 0 && env.Body[0] == '"' && json.Unmarshal(env.Body, &s) == nil {
		r.Body = []byte(s)
	}
	return r, nil
}

// open decrypts an answer that is base64 (the node default, Desktop's
// {"result": b64}) or raw ciphertext ("base64": false, v4 servers).
func (o *Onion) open(body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	var wrapped struct {
		Result string `json:"result"`
	}
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &wrapped) == nil && wrapped.Result != "" {
		trimmed = []byte(wrapped.Result)
	}
	if raw, err := base64.StdEncoding.DecodeString(string(trimmed)); err == nil {
		if pt, err := o.reply.Open(raw); err == nil {
			return pt, nil
		}
	}
	if pt, err := o.reply.Open(body); err == nil {
		return pt, nil
	}
	return nil, fmt.Errorf("answer of %d bytes does not decrypt with the destination key", len(body))
}

// Client sends onion requests over HTTPS.
type Client struct {
	mu      sync.Mutex
	clients map[[32]byte]*http.Client
	// Timeout bounds one request end to end (default 60 s: relays allow 30 s
	// per hop, the proxy 25 s).
	Timeout time.Duration
}

// New makes a Client.
func New() *Client { return &Client{clients: map[[32]byte]*http.Client{}, Timeout: 60 * time.Second} }

// httpClient returns a keep-alive client that checks the first hop's TLS
// certificate holds the Ed25519 key the node list publishes for it (nodes'
// certificates are self-signed; the key is what identifies them).
func (c *Client) httpClient(first [32]byte) *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if hc, ok := c.clients[first]; ok {
		return hc
	}
	want := ed25519.PublicKey(append([]byte(nil), first[:]...))
	tc := &tls.Config{
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			got, err := identity.PeerKey(&cs)
			if err != nil {
				return fmt.Errorf("first hop identity: %w", err)
			}
			if !got.Equal(want) {
				return fmt.Errorf("first hop presents key %x, node list says %x", []byte(got), []byte(want))
			}
			return nil
		},
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, DisableCompression: true}}
	c.clients[first] = hc
	return hc
}

// CloseIdleConnections closes pooled connections.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, hc := range c.clients {
		hc.CloseIdleConnections()
	}
}

// Send posts o to a node's onion endpoint and decodes the answer. target is
// a base URL such as https://10.0.0.5:22021 (the path /onion_req/v2 is added
// when target has none) or a full endpoint URL.
func (c *Client) Send(ctx context.Context, target string, o *Onion) (Response, error) {
	u, err := url.Parse(target)
	if err != nil {
		return Response{}, fmt.Errorf("onion endpoint %q: %w", target, err)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/onion_req/v2"
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(o.Body))
	if err != nil {
		return Response{}, fmt.Errorf("onion request: %w", err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.httpClient(o.First.Ed25519).Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("onion request to %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return Response{}, fmt.Errorf("onion answer from %s: %w", u.Redacted(), err)
	}
	return o.Decode(resp.StatusCode, body)
}

// URL is the HTTPS base URL of a node.
func URL(n registry.Node) string { return "https://" + n.HTTPSAddr() }

// Do builds an onion for payload through path and sends it to path[0].
func (c *Client) Do(ctx context.Context, path []registry.Node, payload []byte, enc onionreq.EncType) (Response, error) {
	o, err := Build(path, payload, enc)
	if err != nil {
		return Response{}, err
	}
	return c.Send(ctx, URL(path[0]), o)
}
