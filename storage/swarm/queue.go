package swarm

import (
	"context"
	"net/http"
	"time"

	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
)

// Retry limits for forwards that failed.
const (
	retryBase = time.Second
	retryMax  = 30 * time.Second
	// ccRetryWindow: a forwarded request other than store carries a
	// signature checked within ±60 s (±70 s for some), so retrying it later
	// is pointless.
	ccRetryWindow = 55 * time.Second
	// maxQueued bounds what one unreachable member can cost us in memory;
	// past it the member catches up with its data_ready t=1 on return.
	maxQueued = 100_000
)

// memberQueue holds what one member missed.
type memberQueue struct {
	node       registry.Node
	deliveries []storage.Message // failed stores, re-sent as sn.data
	requests   []ccRequest       // failed other recursive requests
	failures   int
	next       time.Time
	busy       bool
}

type ccRequest struct {
	method string
	params []byte
	at     time.Time
}

// Queued reports how many forwards wait for each member (status page).
func (s *Swarm) Queued() map[string]int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	out := map[string]int{}
	for _, q := range s.queues {
		if n := len(q.deliveries) + len(q.requests); n > 0 {
			out[q.node.Ed25519Hex()] = n
		}
	}
	return out
}

func (s *Swarm) enqueue(m registry.Node, method string, params []byte) {
	now := s.cfg.Now()
	var msg *storage.Message
	if method == "store" {
		if mm, err := MessageFromStoreParams(params); err == nil {
			msg = &mm
		} else {
			s.log.Warn("cannot rebuild forwarded store for re-delivery", "err", err)
		}
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	q := s.queues[m.Ed25519]
	if q == nil {
		q = &memberQueue{node: m, next: now.Add(retryBase)}
		s.queues[m.Ed25519] = q
	}
	if len(q.deliveries)+len(q.requests) >= maxQueued {
		s.log.Warn("retry queue full; member will catch up by dump", "member", m.String())
		return
	}
	if msg != nil {
		q.deliveries = append(q.deliveries, *msg)
	} else {
		q.requests = append(q.requests, ccRequest{method: method, params: append([]byte(nil), params...), at: now})
	}
}

// retryQueues re-sends what members missed, one member at a time.
func (s *Swarm) retryQueues(ctx context.Context) {
	now := s.cfg.Now()
	s.qmu.Lock()
	var due []*memberQueue
	for _, q := range s.queues {
		if !q.busy && !q.next.After(now) && len(q.deliveries)+len(q.requests) > 0 {
			q.busy = true
			due = append(due, q)
		}
	}
	s.qmu.Unlock()
	// One goroutine per member: a member that times out must not hold up
	// the others' catch-up.
	for _, q := range due {
		go func() {
			s.retryOne(ctx, q)
			s.qmu.Lock()
			q.busy = false
			s.qmu.Unlock()
		}()
	}
}

func (s *Swarm) retryOne(ctx context.Context, q *memberQueue) {
	s.qmu.Lock()
	node := q.node
	deliveries := q.deliveries
	requests := q.requests
	s.qmu.Unlock()

	ok := true
	nowMS := s.cfg.Now().UnixMilli()
	live := deliveries[:0:0]
	for _, m := range deliveries {
		if m.Expiry > nowMS {
			live = append(live, m)
		}
	}
	sent := 0
	for _, group := range SplitMessages(live, DumpBatchBytes) {
		if err := s.sendData(ctx, node, EncodeBlob(group)); err != nil {
			ok = false
			break
		}
		sent += len(group)
	}
	doneReq := 0
	if ok {
		for _, r := range requests {
			if s.cfg.Now().Sub(r.at) > ccRetryWindow {
				doneReq++ // too old to pass the signature check now
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
			rep, err := s.cfg.Transport.Call(cctx, node, peer.CmdStorageCC, StorageCCBody(r.method, r.params))
			cancel()
			if err != nil || retryable(rep.Status) {
				ok = false
				break
			}
			doneReq++
		}
	}

	s.qmu.Lock()
	defer s.qmu.Unlock()
	if cur := s.queues[node.Ed25519]; cur != q {
		return // member left while we were sending
	}
	// Messages delivered in full blobs were the first `sent` live ones;
	// expired ones are simply dropped. New entries may have arrived meanwhile.
	if sent == len(live) {
		q.deliveries = q.deliveries[len(deliveries):]
	} else {
		rest := append([]storage.Message(nil), live[sent:]...)
		q.deliveries = append(rest, q.deliveries[len(deliveries):]...)
	}
	q.requests = q.requests[doneReq:]
	if ok {
		q.failures = 0
		q.next = s.cfg.Now()
		if len(q.deliveries)+len(q.requests) == 0 {
			delete(s.queues, node.Ed25519)
		}
		s.log.Info("member caught up", "member", node.String(), "delivered", sent, "requests", doneReq)
		return
	}
	q.failures++
	q.next = s.cfg.Now().Add(backoff(q.failures))
}

func backoff(failures int) time.Duration {
	d := retryBase
	for i := 1; i < failures && d < retryMax; i++ {
		d *= 2
	}
	return min(d, retryMax)
}

// sendData pushes one sn.data blob and waits for the member's OK.
func (s *Swarm) sendData(ctx context.Context, to registry.Node, blob []byte) error {
	cctx, cancel := context.WithTimeout(ctx, dataTimeout)
	defer cancel()
	rep, err := s.cfg.Transport.Call(cctx, to, peer.CmdData, blob)
	if err != nil {
		return err
	}
	if rep.Status != http.StatusOK {
		return &statusError{rep.Status, string(rep.Body)}
	}
	return nil
}

// dataTimeout bounds one ~1 MB batch (the reference allows 5 min; a batch
// that takes a minute on a Pi's link is already a failure worth retrying).
const dataTimeout = 60 * time.Second

type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return http.StatusText(e.status) + ": " + e.body }
