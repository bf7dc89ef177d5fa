package httpspeer

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/procstat"
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
			body := make([]byte, 1400)
			if _, err := a.tr.Call(context.Background(), srv.rec, peer.CmdStorageCC, body); err != nil {
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
							if r, err := a.tr.Call(context.Background(), srv.rec, peer.CmdStorageCC, body); err != nil || r.Status != http.StatusOK {
								b.Error(fmt.Errorf("call: %v %d", err, r.Status))
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
		})
	}
}
