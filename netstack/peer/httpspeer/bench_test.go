package httpspeer

import (
	"context"
	"crypto/ed25519"
	"github.com/snodebox/snodebox/netstack/peer/peertest"
	"testing"

	"github.com/snodebox/snodebox/netstack/peer"
)

// BenchmarkCall: peer calls per second and CPU per call (caller and callee
// together, both in this process) with a storage_cc-sized body (1.4 KB) and
// a trivial handler, 16 calls in flight as the swarm bench's entry has:
// the transport's share of what one replicated store costs. Peers talk
// HTTP/1.1 keep-alive; the listener also serves HTTP/2 to other clients.
// Calls beyond the one exchange in flight coalesce (batch.go): 27–33 µs
// per call here, against 77–94 with each call alone.
func BenchmarkCall(b *testing.B) {
	for _, h1Only := range []bool{false, true} {
		name := "listener=h2+h1"
		if h1Only {
			name = "listener=h1"
		}
		b.Run(name, func(b *testing.B) {
			a, srv := newTestNode(b, everyone), startTestNode(b, everyone, h1Only)
			srv.tr.Handle(peer.CmdStorageCC, func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
				return peer.Reply{Status: 200, Body: make([]byte, 150)}
			})
			peertest.BenchCalls(b, a.tr, srv.rec, make([]byte, 1400))
		})
	}
}
