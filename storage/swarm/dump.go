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
const dumpWindow = 4

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
	acked  map[string]bool // resumable: hashes the member already has
	again  bool            // asked again while running: walk once more
	cancel context.CancelFunc
	sent   int
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
	d := &dumpState{node: member, acked: map[string]bool{}, cancel: cancel}
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
				d.again = false
				s.qmu.Unlock()
				continue // already-acked hashes are skipped, so a rerun sends only what is new
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

// dumpOnce walks our swarm space and sends what the member has not
// acknowledged yet, in ~1 MB batches with a few in flight.
func (s *Swarm) dumpOnce(ctx context.Context, d *dumpState) error {
	lower, upper, ok := s.Space()
	if !ok {
		return nil
	}
	return s.streamBatches(ctx, lower, upper, func(m storage.Message) bool {
		s.qmu.Lock()
		defer s.qmu.Unlock()
		return !d.acked[m.Hash]
	}, func(ctx context.Context, blob []byte, hashes []string) error {
		if err := s.sendData(ctx, d.node, blob); err != nil {
			return err
		}
		s.qmu.Lock()
		for _, h := range hashes {
			d.acked[h] = true
		}
		d.sent += len(hashes)
		s.qmu.Unlock()
		return nil
	})
}

// streamBatches walks (lower, upper] and hands ~DumpBatchBytes blobs of the
// messages want accepts to send, up to dumpWindow at once. The first send
// error stops the walk.
func (s *Swarm) streamBatches(ctx context.Context, lower, upper uint64, want func(storage.Message) bool,
	send func(ctx context.Context, blob []byte, hashes []string) error) error {
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
	nowMS := s.cfg.Now().UnixMilli()
	flush := func() {
		if bw.Count() == 0 {
			return
		}
		blob, hs := bw.Finish(), hashes
		hashes = nil
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
