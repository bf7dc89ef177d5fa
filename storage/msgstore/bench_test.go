package msgstore

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/procstat"
	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/storetest"
)

// The node's targets (see appliance/node/bench_test.go), for scale: the
// engine alone must stay well above what a node over HTTPS must reach,
// 4,800 stores/s and 3,500 retrieves/s of 20 at 16 clients, in under 40
// MiB.
const (
	targetStoresPerSec    = 4800
	targetRetrievesPerSec = 3500
	targetRSSMiB          = 40
)

func benchMsg(w, i int) storage.Message {
	data := make([]byte, 1024)
	copy(data, fmt.Sprintf("bench writer %d message %d", w, i))
	for j := 40; j < len(data); j++ {
		data[j] = byte(i*31 + j*7 + w)
	}
	return storage.Message{
		Hash: storage.MessageHash(storetest.Account(w), 0, data), Owner: storetest.Account(w),
		Timestamp: 1e12, Expiry: 2e12, Data: data,
	}
}

var benchSeq atomic.Int64

// runStores stores total 1 KiB messages from writers goroutines and
// returns the wall time.
func runStores(b *testing.B, s *Store, writers, total int) time.Duration {
	var wg sync.WaitGroup
	per := total / writers
	base := int(benchSeq.Add(int64(total)))
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if _, _, err := s.Store(bg, benchMsg(w, base+i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkStore: durable 1 KiB stores per second at 1, 16 and 64
// concurrent writers, with the engine's commit queue and, for comparison,
// bbolt's own DB.Batch (which waits MaxBatchDelay = 10 ms to gather a batch).
func BenchmarkStore(b *testing.B) {
	cases := []struct {
		name      string
		boltBatch bool
		writers   int
		perIter   int
	}{
		{"queue/writers=1", false, 1, 500},
		{"queue/writers=16", false, 16, 2048},
		{"queue/writers=64", false, 64, 2048},
		{"boltbatch/writers=1", true, 1, 50},
		{"boltbatch/writers=16", true, 16, 512},
		{"boltbatch/writers=64", true, 64, 2048},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := openTemp(b, Options{boltBatch: c.boltBatch})
			defer s.Close()
			var elapsed time.Duration
			f0 := s.Stats().Fsyncs
			b.ResetTimer()
			for range b.N {
				elapsed += runStores(b, s, c.writers, c.perIter)
			}
			b.StopTimer()
			stores := float64(b.N * c.perIter)
			rate := stores / elapsed.Seconds()
			b.ReportMetric(rate, "stores/s")
			b.ReportMetric(rate/targetStoresPerSec, "x_node_target_4800")
			if !c.boltBatch {
				// bbolt's Batch hides how many commits it made.
				b.ReportMetric(float64(s.Stats().Fsyncs-f0)/stores, "fsyncs/store")
			}
		})
	}
}

// BenchmarkRetrieve: retrieves of 20 messages (1 KiB each) per second.
func BenchmarkRetrieve(b *testing.B) {
	s := openTemp(b, Options{})
	defer s.Close()
	const accounts = 200
	var ms []storage.Message
	for w := range accounts {
		for i := range 20 {
			ms = append(ms, benchMsg(w, i))
		}
	}
	if _, err := s.StoreBatch(bg, ms); err != nil {
		b.Fatal(err)
	}
	for _, readers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			const perIter = 2000
			var elapsed time.Duration
			b.ResetTimer()
			for range b.N {
				var wg sync.WaitGroup
				start := time.Now()
				for r := range readers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := r; i < perIter; i += readers {
							got, _, err := s.Retrieve(bg, storetest.Account(i%accounts), 0, "", 20, 0)
							if err != nil || len(got) != 20 {
								b.Errorf("retrieve: %d messages, %v", len(got), err)
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
			b.ReportMetric(rate/targetRetrievesPerSec, "x_node_target_3500")
		})
	}
}

// procStatus reads a field of this process's /proc status in MiB.
func procStatus(field string) float64 { return procstat.MiB(procstat.Status(procstat.Self, field)) }

// BenchmarkRSS100k: resident memory after 100,000 stored 1 KiB messages
// (stored through 64 concurrent writers). VmRSS includes the pages of the
// memory-mapped database file the B-tree walks touched (RssFile: clean,
// reclaimable page cache); RssAnon is the process's own memory. The
// after_prune figures follow one Prune, which trims the file mapping as the
// node's 10-second prune loop does.
func BenchmarkRSS100k(b *testing.B) {
	for range b.N {
		s := openTemp(b, Options{})
		runStores(b, s, 64, 100_000)
		runtime.GC()
		st := s.Stats()
		b.ReportMetric(procStatus("VmRSS"), "VmRSS_MiB")
		b.ReportMetric(procStatus("RssAnon"), "RssAnon_MiB")
		b.ReportMetric(procStatus("RssFile"), "RssFile_MiB")
		if _, err := s.Prune(bg, 1); err != nil {
			b.Fatal(err)
		}
		rss := procStatus("VmRSS")
		b.ReportMetric(rss, "VmRSS_after_prune_MiB")
		b.ReportMetric(procStatus("RssFile"), "RssFile_after_prune_MiB")
		b.ReportMetric(rss/targetRSSMiB, "x_target_40MiB_after_prune")
		b.ReportMetric(float64(st.DBBytes)/(1<<20), "db_MiB")
		b.ReportMetric(float64(st.Fsyncs), "commits")
		s.Close()
	}
}
