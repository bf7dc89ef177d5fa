package omqpeer

import (
	"context"
	"crypto/ed25519"
	"github.com/snodebox/snodebox/netstack/peer/peertest"
	"testing"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/netstack/peer"
)

// BenchmarkCall: sn.storage_cc calls per second over OxenMQ and CPU per
// call (caller and callee together, both in this process), with the same
// 1.4 KB body, trivial handler and 16 calls in flight as httpspeer's
// BenchmarkCall, so the two print side by side in make bench.
func BenchmarkCall(b *testing.B) {
	nodes := startNodes(b, 2, map[int]bool{0: true, 1: true})
	nodes[1].t.Handle(peer.CmdStorageCC, func(ctx context.Context, f ed25519.PublicKey, body []byte) peer.Reply {
		return peer.Reply{Status: 200, Body: make([]byte, 150)}
	})
	// A storage_cc-sized body: [method, params] with 1.4 KB of params.
	body := bencode.MustMarshal([]any{"store", map[string]any{"data": string(make([]byte, 1370))}})
	peertest.BenchCalls(b, nodes[0].t, nodes[1].rec, body)
	b.ReportMetric(0, "ns/op")
}
