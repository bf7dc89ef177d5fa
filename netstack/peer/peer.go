// Package peer is the node-to-node transport: commands such as storage_cc,
// data, data_ready, onion_request and ping sent to another service node and
// answered with a status and a body. Storage and onion code see only the
// Transport interface, so OxenMQ or QUIC transports can slot in beside HTTPS.
package peer

import (
	"context"
	"crypto/ed25519"
	"errors"

	"github.com/snodebox/snodebox/netstack/registry"
)

// Commands of DESIGN.md §2 (paths /sn/v1/<command> on the HTTPS transport).
const (
	CmdStorageCC    = "storage_cc"
	CmdData         = "data"
	CmdDataReady    = "data_ready"
	CmdOnionRequest = "onion_request"
	CmdPing         = "ping"
)

// Reply is a peer's answer: an HTTP-style status and an opaque body
// (bencoded for most commands).
type Reply struct {
	Status int
	Body   []byte
}

// ErrUnreachable wraps failures to reach a peer at all (connect, TLS, wrong
// identity), as opposed to a peer that answered with an error status.
var ErrUnreachable = errors.New("peer unreachable")

// ErrTimeout wraps a peer that did not answer within the context deadline.
var ErrTimeout = errors.New("peer timed out")

// Transport sends commands to other nodes.
type Transport interface {
	Call(ctx context.Context, to registry.Node, command string, body []byte) (Reply, error)
}

// Handler serves one command. from is the caller's verified Ed25519 key.
type Handler func(ctx context.Context, from ed25519.PublicKey, body []byte) Reply

// Mux is where services register the commands they serve; the transport
// server dispatches to it.
type Mux interface {
	Handle(command string, h Handler)
}
