package omqpeer

import (
	"context"
	"crypto/ed25519"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/procstat"
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
	if _, err := nodes[0].t.Call(context.Background(), nodes[1].rec, peer.CmdStorageCC, body); err != nil {
		b.Fatal(err)
	}
	const perIter, workers = 4000, 16
	cpu0, _ := procstat.CPUTime(os.Getpid())
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= perIter {
					if r, err := nodes[0].t.Call(context.Background(), nodes[1].rec, peer.CmdStorageCC, body); err != nil || r.Status != 200 {
						b.Errorf("call: %v %d", err, r.Status)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	cpu1, _ := procstat.CPUTime(os.Getpid())
	calls := float64(b.N * perIter)
	b.ReportMetric(calls/time.Since(start).Seconds(), "calls/s")
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/calls, "cpu_us/call")
	b.ReportMetric(0, "ns/op")
}
