package swarm

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
)

// dumpWindow is how many dump batches may be unacknowledged (spec: 5).
var dumpWindow = 4

// dumpRetryPause paces a failed dump's retries (spec: 15 s).
var dumpRetryPause = 15 * time.Second

type handshake struct {
	node  registry.Node
	next  time.Time
	tries int
	busy  bool
}

type dumpState struct {
	node   registry.Node
	again  bool // asked again while running: walk once more from the start
	cancel context.CancelFunc
	sent   int
	// Resume point: the member has every message of space before
	// position `from` (in walk order). Positions, not hashes, so a dump of
	// millions of messages costs a few words of memory.
	resume bool
	space  [2]uint64 // the swarm space the resume point belongs to
	walk   [2]uint64 // range still to send
}

// maintain paces handshakes, retries and evacuation.
func (s *Swarm) maintain(ctx context.Context) {
	t := time.NewTicker(s.cfg.MaintainInterval)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		s.handshakes(ctx, &wg)
		s.retryQueues(ctx)
		s.evacuateIfNeeded(ctx, &wg)
	}
}

// handshakes sends data_ready to pending members (t=0: we will dump to
// you) and to members we ask for their copy (t=1).
func (s *Swarm) handshakes(ctx context.Context, wg *sync.WaitGroup) {
	now := s.cfg.Now()
	type job struct {
		h    *handshake
		node registry.Node
		t    int64
	}
	var jobs []job
	s.qmu.Lock()
	for _, h := range s.pending {
		if !h.busy && !h.next.After(now) {
			h.busy = true
			jobs = append(jobs, job{h, h.node, 0})
		}
	}
	for _, h := range s.asks {
		if !h.busy && !h.next.After(now) {
			h.busy = true
			jobs = append(jobs, job{h, h.node, 1})
		}
	}
	s.qmu.Unlock()
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.dataReady(ctx, j.node, j.t)
			s.qmu.Lock()
			defer s.qmu.Unlock()
			j.h.busy = false
			set := s.pending
			if j.t == 1 {
				set = s.asks
			}
			if set[j.h.node.Ed25519] != j.h {
				return // superseded by a membership change
			}
			if err != nil {
				j.h.tries++
				j.h.next = s.cfg.Now().Add(s.cfg.HandshakeInterval)
				if j.h.tries == 1 || j.h.tries%10 == 0 {
					s.log.Debug("data_ready not accepted yet", "member", j.h.node.String(), "t", j.t, "err", err)
				}
				return
			}
			delete(set, j.h.node.Ed25519)
			if j.t == 0 {
				s.startDumpLocked(ctx, j.h.node)
			}
		}()
	}
}

// dataReady sends one data_ready and checks for the OK.
func (s *Swarm) dataReady(ctx context.Context, to registry.Node, t int64) error {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
	defer cancel()
	body := bencode.MustMarshal(map[string]any{"#": Version, "t": t})
	rep, err := s.cfg.Transport.Call(cctx, to, peer.CmdDataReady, body)
	if err != nil {
		return err
	}
	if rep.Status != http.StatusOK {
		return &statusError{rep.Status, string(rep.Body)}
	}
	if string(rep.Body) == "OK" { // pre-2.12 peers answer a bare OK
		return nil
	}
	v, err := bencode.Unmarshal(rep.Body)
	if err != nil {
		return err
	}
	l, ok := v.([]any)
	if !ok || len(l) == 0 {
		return errors.New("data_ready reply is not a list")
	}
	if b, ok := l[0].([]byte); !ok || string(b) != "OK" {
		return errors.New("data_ready reply: " + string(rep.Body))
	}
	return nil
}

// scheduleDump starts (or repeats) a dump of our swarm space to member.
func (s *Swarm) scheduleDump(member registry.Node) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.startDumpLocked(context.Background(), member)
}

// startDumpLocked needs qmu. Dumps outlive the request that asked for them,
// and end when the member leaves our swarm or the node stops.
func (s *Swarm) startDumpLocked(_ context.Context, member registry.Node) {
	if d, ok := s.dumps[member.Ed25519]; ok {
		d.again = true
		return
	}
	ctx, cancel := context.WithCancel(s.runCtx())
	d := &dumpState{node: member, cancel: cancel}
	s.dumps[member.Ed25519] = d
	go s.runDump(ctx, d)
}

func (s *Swarm) runDump(ctx context.Context, d *dumpState) {
	start := s.cfg.Now()
	failures := 0
	for {
		err := s.dumpOnce(ctx, d)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			s.qmu.Lock()
			if d.again {
				d.again, d.resume = false, false
				s.qmu.Unlock()
				continue
			}
			if s.dumps[d.node.Ed25519] == d {
				delete(s.dumps, d.node.Ed25519)
			}
			s.qmu.Unlock()
			d.cancel()
			s.log.Info("swarm dump delivered", "member", d.node.String(), "messages", d.sent, "took", s.cfg.Now().Sub(start).Round(time.Millisecond))
			return
		}
		failures++
		s.log.Warn("swarm dump interrupted; will resume", "member", d.node.String(), "sent", d.sent, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(backoff(failures), dumpRetryPause)):
		}
	}
}

// dumpOnce walks our swarm space (from the resume point, if any) and sends
// it in ~1 MB batches with a few in flight.
func (s *Swarm) dumpOnce(ctx context.Context, d *dumpState) error {
	lower, upper, ok := s.Space()
	if !ok {
		return nil
	}
	s.qmu.Lock()
	if !d.resume || d.space != [2]uint64{lower, upper} {
		d.resume, d.space, d.walk = false, [2]uint64{lower, upper}, [2]uint64{lower, upper}
	}
	walk := d.walk
	s.qmu.Unlock()
	cur := newCursor(walk[0], walk[1])
	err := s.streamBatches(ctx, walk[0], walk[1], cur.see, func(ctx context.Context, blob []byte, hashes []string) error {
		return s.sendData(ctx, d.node, blob)
	}, func(seq, n int, lastPos uint64) {
		s.qmu.Lock()
		defer s.qmu.Unlock()
		d.sent += n
		if lo, hi, ok := cur.acked(seq, lastPos); ok {
			d.resume, d.walk = true, [2]uint64{lo, hi}
		}
	})
	return err
}

// cursor turns acknowledged batches into a resume range. It relies on the
// store walking positions in ring order from lower (both engines do); if a
// walk ever comes out of order, it gives no resume point and a retry
// starts over, which is only slower.
type cursor struct {
	mu           sync.Mutex
	lower, upper uint64
	ordered      bool
	lastKey      uint64
	started      bool
	batchLast    []uint64 // rank of each batch's last position, by sequence
	done         map[int]bool
	prefix       int // batches 0..prefix-1 acknowledged
}

func newCursor(lower, upper uint64) *cursor {
	return &cursor{lower: lower, upper: upper, ordered: true, done: map[int]bool{}}
}

// key is a position's rank in the walk: the ring from lower+1 round to
// upper, or 0..max for the whole ring.
func (c *cursor) key(p uint64) uint64 {
	if c.lower == c.upper {
		return p
	}
	return p - c.lower - 1
}

// see is the walk's filter: it notes each message's position.
func (c *cursor) see(m storage.Message) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.key(storage.Position(m.Owner.Key))
	if c.started && k < c.lastKey {
		c.ordered = false
	}
	c.started, c.lastKey = true, k
	return true
}

// acked marks batch seq delivered and returns the range left to send when
// the acknowledged prefix grew: from the last position of that prefix
// (inclusive: an account's messages may straddle two batches) to upper.
func (c *cursor) acked(seq int, lastPos uint64) (lower, upper uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.batchLast) <= seq {
		c.batchLast = append(c.batchLast, 0)
	}
	c.batchLast[seq] = c.key(lastPos)
	c.done[seq] = true
	grew := false
	for c.done[c.prefix] {
		delete(c.done, c.prefix)
		c.prefix++
		grew = true
	}
	if !grew || !c.ordered {
		return 0, 0, false
	}
	lastKey := c.batchLast[c.prefix-1]
	if c.lower == c.upper {
		if lastKey == 0 {
			return 0, 0, false
		}
		return lastKey - 1, ^uint64(0), true
	}
	p := lastKey + c.lower + 1 // back from rank to position
	return p - 1, c.upper, true
}

// streamBatches walks (lower, upper] and hands ~DumpBatchBytes blobs of the
// messages want accepts to send, up to dumpWindow at once. The first send
// error stops the walk. acked (may be nil) hears of each delivered batch:
// its sequence number, message count and the position of its last message.
func (s *Swarm) streamBatches(ctx context.Context, lower, upper uint64, want func(storage.Message) bool,
	send func(ctx context.Context, blob []byte, hashes []string) error, acked func(seq, n int, lastPos uint64)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, dumpWindow)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		errMu.Unlock()
	}
	var bw BlobWriter
	var hashes []string
	var lastPos uint64
	seq := 0
	nowMS := s.cfg.Now().UnixMilli()
	flush := func() {
		if bw.Count() == 0 {
			return
		}
		blob, hs, n, last := bw.Finish(), hashes, seq, lastPos
		hashes = nil
		seq++
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := send(ctx, blob, hs); err != nil {
				fail(err)
				return
			}
			if acked != nil {
				acked(n, len(hs), last)
			}
		}()
	}
	err := s.cfg.Store.ForEach(ctx, lower, upper, func(m storage.Message) error {
		if m.Expiry <= nowMS || !want(m) {
			return nil
		}
		if bw.Count() > 0 && bw.Len()+EncodedSize(m) > DumpBatchBytes {
			flush()
		}
		bw.Add(m)
		hashes = append(hashes, m.Hash)
		lastPos = storage.Position(m.Owner.Key)
		return ctx.Err()
	})
	if err == nil {
		flush()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return err
}
