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
// HTTP/2 (one connection per peer, no handshakes under bursts); h1 is the
// fallback for listeners without h2, measured for comparison (cheaper per
// call, but a connection per concurrent call).
func BenchmarkCall(b *testing.B) {
	for _, h1 := range []bool{false, true} {
		name := "h2"
		if h1 {
			name = "h1"
		}
		b.Run(name, func(b *testing.B) {
			a, srv := newTestNode(b, everyone), startTestNode(b, everyone, h1)
			srv.tr.Handle(peer.CmdStorageCC, func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
				return peer.Reply{Status: 200, Body: make([]byte, 150)}
			})
			peertest.BenchCalls(b, a.tr, srv.rec, make([]byte, 1400))
		})
	}
}
