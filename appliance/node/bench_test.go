package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/appliance/node/nodetest"
	"github.com/snodebox/snodebox/appliance/procstat"
	"github.com/snodebox/snodebox/storage/rpc"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// The comparison point is the upstream C++ storage server: ~2,300 stores/s
// at 16 clients without fsync and ~1,300 retrieves/s of 20 messages at 16
// clients. snodebox aims at twice that with every store fsynced, in less
// than 40 MiB of resident memory.
const (
	upstreamStoresPerSec    = 2300
	upstreamRetrievesPerSec = 1300
	targetStoresPerSec      = 2 * upstreamStoresPerSec
	targetRetrievesPerSec   = 2 * upstreamRetrievesPerSec
	targetRSSMiB            = 40
	benchAccounts           = 64
)

var clientCounts = []int{1, 16, 64}

// benchSetup is printed with every figure (benchmark logs always print).
const benchSetup = "in-process node, HTTPS on loopback with keep-alive, per-IP rate limit DISABLED, every store fsynced; clients run in the same process on the same cores"

// benchNode runs an in-process node (HTTPS on loopback, rate limit off so
// the load generator is not throttled) until the benchmark ends.
func benchNode(b *testing.B) (*node.Node, string) {
	b.Helper()
	n := nodetest.Start(b, node.Config{
		RateLimit: rpc.RateLimit{Disabled: true},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	url := "https://" + n.Self.HTTPSAddr()
	waitReady(b, newClient(1), url, nil)
	return n, url
}

var storeSeq atomic.Int64

// storeLoad runs total stores from clients concurrent clients and returns
// the wall time.
func storeLoad(b *testing.B, cl *rpcclient.Client, url string, signers []*rpcclient.Signer, clients, total int) time.Duration {
	base := int(storeSeq.Add(int64(total)))
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				code, _, err := store(context.Background(), cl, url, signers[i%len(signers)], payload(c, base+i))
				if err != nil || code != http.StatusOK {
					b.Errorf("store: %d %v", code, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func benchSigners(b *testing.B) []*rpcclient.Signer {
	out := make([]*rpcclient.Signer, benchAccounts)
	for i := range out {
		out[i] = signer(b, 1000+i)
	}
	return out
}

// BenchmarkNodeStore: 1 KiB namespace-0 stores per second over HTTPS.
func BenchmarkNodeStore(b *testing.B) {
	n, url := benchNode(b)
	signers := benchSigners(b)
	for _, clients := range clientCounts {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			b.Logf("%s", benchSetup)
			cl := newClient(clients)
			const perIter = 2000
			f0 := n.Store.Stats().Fsyncs
			var elapsed time.Duration
			b.ResetTimer()
			for range b.N {
				elapsed += storeLoad(b, cl, url, signers, clients, perIter)
			}
			b.StopTimer()
			stores := float64(b.N * perIter)
			rate := stores / elapsed.Seconds()
			b.ReportMetric(rate, "stores/s")
			b.ReportMetric(rate/targetStoresPerSec, "x_target_4600")
			b.ReportMetric(rate/upstreamStoresPerSec, "x_upstream_2300")
			b.ReportMetric(float64(n.Store.Stats().Fsyncs-f0)/stores, "fsyncs/store")
		})
	}
}

// BenchmarkNodeRetrieve: signed retrieves of 20 messages (1 KiB each) per
// second over HTTPS; each request carries a fresh Ed25519 signature the
// node verifies.
func BenchmarkNodeRetrieve(b *testing.B) {
	_, url := benchNode(b)
	signers := benchSigners(b)
	storeLoad(b, newClient(16), url, signers, 16, 20*benchAccounts)
	for _, clients := range clientCounts {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			b.Logf("%s", benchSetup)
			cl := newClient(clients)
			const perIter = 2000
			var elapsed time.Duration
			b.ResetTimer()
			for range b.N {
				var next atomic.Int64
				var wg sync.WaitGroup
				start := time.Now()
				for range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := int(next.Add(1)) - 1
							if i >= perIter {
								return
							}
							n, err := retrieveCount(cl, url, signers[i%len(signers)])
							if err != nil || n != 20 {
								b.Errorf("retrieve: %d messages, %v", n, err)
								return
							}
						}
					}()
				}
				wg.Wait()
				elapsed += time.Since(start)
			}
			b.StopTimer()
			rate := float64(b.N*perIter) / elapsed.Seconds()
			b.ReportMetric(rate, "retrieves/s")
			b.ReportMetric(rate/targetRetrievesPerSec, "x_target_2600")
			b.ReportMetric(rate/upstreamRetrievesPerSec, "x_upstream_1300")
		})
	}
}

// retrieveCount is a signed retrieve of up to 20 messages that only counts
// the messages in the answer: decoding 27 KB of JSON per answer would
// charge the load generator's work, which shares the CPUs, to the node.
// (The e2e test checks answers in full.)
func retrieveCount(cl *rpcclient.Client, url string, s *rpcclient.Signer) (int, error) {
	status, body, err := cl.Do(context.Background(), url, "retrieve", s.Retrieve(rpcclient.RetrieveArgs{
		MaxCount: 20, Timestamp: time.Now().UnixMilli()}))
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("retrieve: status %d: %s", status, body)
	}
	return bytes.Count(body, []byte(`"hash"`)), nil
}

// procStatusMiB reads a field of /proc/PID/status in MiB.
func procStatusMiB(pid int, field string) float64 { return procstat.MiB(procstat.Status(pid, field)) }

// procCPU is the user+system CPU time process pid has used.
func procCPU(pid int) time.Duration {
	d, _ := procstat.CPUTime(pid)
	return d
}

// BenchmarkSnoded measures a real `snoded run` child process: 100,000
// stores of 1 KiB from 64 HTTPS clients, then 2,000 signed retrieves of 20
// messages from 16 clients, with the node's own CPU time per request (from
// /proc, so the load generator's share of the CPUs is not charged to the
// node; the per-core rate is what one core of this machine sustains), and
// its resident memory right after the load and after its next prune. VmRSS
// counts the pages of the memory-mapped database the process touched
// (RssFile: clean page cache the kernel reclaims under pressure, trimmed by
// each prune); RssAnon is the node's own memory (Go heap, stacks, TLS).
func BenchmarkSnoded(b *testing.B) {
	dir := b.TempDir()
	bin := buildSnoded(b, dir)
	for range b.N {
		data := filepath.Join(dir, "data")
		os.RemoveAll(data)
		listen := nodetest.FreeAddr(b)
		url := "https://" + listen
		p := startSnoded(b, bin, data, listen, nodetest.FreeAddr(b))
		cl := newClient(64)
		waitReady(b, cl, url, p.exited)
		b.Logf("snoded run (child process) over HTTPS on loopback, per-IP rate limit DISABLED, every store fsynced")
		pid := p.cmd.Process.Pid
		signers := benchSigners(b)

		const stores = 100_000
		cpu0 := procCPU(pid)
		elapsed := storeLoad(b, cl, url, signers, 64, stores)
		cpuPer := float64((procCPU(pid) - cpu0).Microseconds()) / stores
		rate := float64(stores) / elapsed.Seconds()
		b.ReportMetric(rate, "stores/s@64")
		b.ReportMetric(rate/targetStoresPerSec, "x_target_4600")
		b.ReportMetric(cpuPer, "node_cpu_us/store")
		b.ReportMetric(1e6/cpuPer, "stores/s/core")

		rss := procStatusMiB(pid, "VmRSS")
		b.ReportMetric(rss, "VmRSS_MiB")
		b.ReportMetric(procStatusMiB(pid, "RssAnon"), "RssAnon_MiB")
		b.ReportMetric(procStatusMiB(pid, "RssFile"), "RssFile_MiB")

		const retrieves = 2000
		rcl := newClient(16)
		var next atomic.Int64
		var wg sync.WaitGroup
		cpu0 = procCPU(pid)
		start := time.Now()
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= retrieves {
						return
					}
					if n, err := retrieveCount(rcl, url, signers[i%len(signers)]); err != nil || n != 20 {
						b.Errorf("retrieve: %d messages, %v", n, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		rrate := float64(retrieves) / time.Since(start).Seconds()
		rcpu := float64((procCPU(pid) - cpu0).Microseconds()) / retrieves
		b.ReportMetric(rrate, "retrieves/s@16")
		b.ReportMetric(rrate/targetRetrievesPerSec, "x_target_2600")
		b.ReportMetric(rcpu, "node_cpu_us/retrieve")
		b.ReportMetric(1e6/rcpu, "retrieves/s/core")

		// The node prunes (and trims its database mapping) every
		// PruneInterval; measure again once one has passed.
		time.Sleep(node.PruneInterval + time.Second)
		rss = procStatusMiB(pid, "VmRSS")
		b.ReportMetric(rss, "VmRSS_after_prune_MiB")
		b.ReportMetric(procStatusMiB(pid, "RssAnon"), "RssAnon_after_prune_MiB")
		b.ReportMetric(rss/targetRSSMiB, "x_target_40MiB_after_prune")
		b.ReportMetric(procStatusMiB(pid, "VmHWM"), "VmHWM_MiB")
		if fi, err := os.Stat(filepath.Join(data, "messages.db")); err == nil {
			b.ReportMetric(float64(fi.Size())/(1<<20), "db_MiB")
		}
		p.cmd.Process.Kill()
		<-p.exited
	}
}
