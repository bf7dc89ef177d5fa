package swarm

import (
	"context"
	"fmt"
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

// memberQueue holds, in order, what one member missed. Order matters: a
// store and a later delete of the same message must reach the member in
// that order, so while a backlog exists new requests join it instead of
// overtaking it.
type memberQueue struct {
	node     registry.Node
	items    []queued
	failures int
	next     time.Time
	busy     bool
}

// queued is a failed store (re-sent as an sn.data delivery, which never
// expires out of signature tolerance) or another recursive request.
type queued struct {
	msg *storage.Message
	req *ccRequest
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
		if len(q.items) > 0 {
			out[q.node.Ed25519Hex()] = len(q.items)
		}
	}
	return out
}

// backlog is how many requests wait for member m.
func (s *Swarm) backlog(m registry.Node) int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if q := s.queues[m.Ed25519]; q != nil {
		return len(q.items)
	}
	return 0
}

func (s *Swarm) enqueue(m registry.Node, method string, params []byte) {
	now := s.cfg.Now()
	var item queued
	if method == "store" {
		if mm, err := MessageFromStoreParams(params); err == nil {
			item.msg = &mm
		} else {
			s.log.Warn("cannot rebuild forwarded store for re-delivery", "err", err)
		}
	}
	if item.msg == nil {
		item.req = &ccRequest{method: method, params: append([]byte(nil), params...), at: now}
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	q := s.queues[m.Ed25519]
	if q == nil {
		q = &memberQueue{node: m, next: now.Add(retryBase)}
		s.queues[m.Ed25519] = q
	}
	if len(q.items) >= maxQueued {
		s.log.Warn("retry queue full; member will catch up by dump", "member", m.String())
		return
	}
	q.items = append(q.items, item)
}

// errBacklog is the member reply while older requests to it still wait.
func errBacklog(n int) error {
	return fmt.Errorf("%w: %d earlier requests still queued for this member", peer.ErrUnreachable, n)
}

// retryQueues re-sends what members missed.
func (s *Swarm) retryQueues(ctx context.Context) {
	now := s.cfg.Now()
	s.qmu.Lock()
	var due []*memberQueue
	for _, q := range s.queues {
		if !q.busy && !q.next.After(now) && len(q.items) > 0 {
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

// retryOne sends a member's queue in order: runs of stores as sn.data
// blobs, other requests one by one. It stops at the first failure.
func (s *Swarm) retryOne(ctx context.Context, q *memberQueue) {
	s.qmu.Lock()
	node := q.node
	items := append([]queued(nil), q.items...)
	s.qmu.Unlock()

	done, delivered, requests := 0, 0, 0
	ok := true
	nowMS := s.cfg.Now().UnixMilli()
	for done < len(items) && ok {
		if items[done].msg != nil {
			// A run of deliveries: one blob per ~1 MB.
			end := done
			var run []storage.Message
			size := 0
			for end < len(items) && items[end].msg != nil && size < DumpBatchBytes {
				if m := *items[end].msg; m.Expiry > nowMS {
					run = append(run, m)
					size += EncodedSize(m)
				}
				end++
			}
			if len(run) > 0 {
				if err := s.sendData(ctx, node, EncodeBlob(run)); err != nil {
					ok = false
					break
				}
			}
			delivered += len(run)
			done = end
			continue
		}
		r := items[done].req
		if s.cfg.Now().Sub(r.at) <= ccRetryWindow { // else too old to pass the signature check
			cctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
			rep, err := s.cfg.Transport.Call(cctx, node, peer.CmdStorageCC, StorageCCBody(r.method, r.params))
			cancel()
			if err != nil || retryable(rep.Status) {
				ok = false
				break
			}
			requests++
		}
		done++
	}

	s.qmu.Lock()
	defer s.qmu.Unlock()
	if cur := s.queues[node.Ed25519]; cur != q {
		return // member left while we were sending
	}
	q.items = q.items[done:] // entries queued meanwhile stay behind
	if ok {
		q.failures = 0
		q.next = s.cfg.Now()
		if len(q.items) == 0 {
			delete(s.queues, node.Ed25519)
		}
		s.log.Info("member caught up", "member", node.String(), "delivered", delivered, "requests", requests)
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
