package swarm

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/msgstore"
)

// BenchmarkNewMemberDump: seconds for a node joining a swarm to receive a
// 10,000-message swarm dump (data_ready handshake, ~1 MB sn.data batches,
// bbolt inserts with fsync on the receiver). The transport is in-process,
// so the figure is the protocol and storage cost without TLS. Fixed work per
// iteration (use -benchtime 1x).
func BenchmarkNewMemberDump(b *testing.B) {
	const count = 10_000
	const sw = uint64(1) << 40
	var total time.Duration
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		n := newNet(b)
		n.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		old := []*tnode{n.add(10 * it), n.add(10*it + 1)}
		fresh := n.add(10*it + 2)
		st, err := msgstore.Open(filepath.Join(b.TempDir(), "new.db"), msgstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		fresh.store = nil
		fresh.sw.cfg.Store = st
		var msgs []storage.Message
		for i := range count {
			m := msg(accountAt(sw+uint64(i)*7919, byte(i)), i)
			m.Data = append(m.Data, make([]byte, 200)...) // a typical small Session message
			m.Hash = storage.MessageHash(m.Owner, 0, m.Data)
			msgs = append(msgs, m)
		}
		for _, tn := range old {
			if _, err := tn.store.StoreBatch(context.Background(), msgs); err != nil {
				b.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		n.publish(map[*tnode]uint64{old[0]: sw, old[1]: sw})
		n.run(ctx, old...)
		for old[0].sw.NotReady() != nil || old[1].sw.NotReady() != nil {
			time.Sleep(5 * time.Millisecond)
		}
		b.StartTimer()
		start := time.Now()
		n.publish(map[*tnode]uint64{old[0]: sw, old[1]: sw, fresh: sw})
		n.run(ctx, fresh)
		for st.Stats().Messages < count {
			time.Sleep(2 * time.Millisecond)
		}
		total += time.Since(start)
		b.StopTimer()
		cancel()
		st.Close()
	}
	secs := total.Seconds() / float64(b.N)
	b.ReportMetric(secs, "s/dump")
	b.ReportMetric(count/secs, "msgs/s")
	b.ReportMetric(0, "ns/op")
}
