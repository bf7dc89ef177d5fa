// Package peertest holds what the peer transports' tests share: the call
// load their benchmarks measure, so HTTPS and OMQ figures compare like for
// like.
package peertest

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/procstat"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

// Calls and Workers are the load: 4,000 calls per iteration, 16 in flight
// as the swarm bench's entry has.
const (
	Calls   = 4000
	Workers = 16
)

// BenchCalls sends Calls storage_cc calls of body to `to` per iteration
// from Workers goroutines and reports calls/s and CPU µs per call (caller
// and callee together, both in this process).
func BenchCalls(b *testing.B, t peer.Transport, to registry.Node, body []byte) {
	b.Helper()
	if _, err := t.Call(context.Background(), to, peer.CmdStorageCC, body); err != nil {
		b.Fatal(err)
	}
	cpu0, _ := procstat.CPUTime(os.Getpid())
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= Calls {
					if r, err := t.Call(context.Background(), to, peer.CmdStorageCC, body); err != nil || r.Status != 200 {
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
	calls := float64(b.N * Calls)
	b.ReportMetric(calls/time.Since(start).Seconds(), "calls/s")
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/calls, "cpu_us/call")
}
