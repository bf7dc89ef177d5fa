package swarm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
)

var errStale = errors.New("membership changed during handover")

// maxTracked bounds the hashes a handover remembers for its second walk
// (~100 bytes each): a board must not run out of memory handing over a
// large store.
const maxTracked = 200_000

// Handover reports the evacuation state for the status page: pending is
// true while messages outside our swarm space wait for their new owners.
func (s *Swarm) Handover() (pending bool, failures int) {
	s.mu.RLock()
	gen := s.evacGen
	s.mu.RUnlock()
	s.evacMu.Lock()
	defer s.evacMu.Unlock()
	return s.evacDone != gen, s.evacFail
}

func (s *Swarm) evacuateIfNeeded(ctx context.Context, wg *sync.WaitGroup) {
	s.mu.RLock()
	gen, have := s.evacGen, s.have
	s.mu.RUnlock()
	s.evacMu.Lock()
	if !have || gen == s.evacDone || s.evacRunning || s.cfg.Now().Before(s.evacNext) {
		s.evacMu.Unlock()
		return
	}
	s.evacRunning = true
	s.evacMu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := s.evacuate(ctx, gen)
		s.evacMu.Lock()
		s.evacRunning = false
		if err == nil {
			s.evacDone, s.evacFail = gen, 0
			s.evacMu.Unlock()
			s.mu.Lock()
			if s.evacGen == gen {
				s.retained = nil
			}
			s.mu.Unlock()
			return
		}
		if !errors.Is(err, errStale) {
			s.evacFail++
			s.evacNext = s.cfg.Now().Add(min(time.Duration(s.evacFail)*5*time.Second, 2*time.Minute))
			if ctx.Err() == nil {
				s.log.Warn("handover incomplete; keeping messages and retrying", "err", err, "failures", s.evacFail)
			}
		}
		s.evacMu.Unlock()
		s.poke()
	}()
}

// evacuate pushes every message outside our swarm space to all members of
// the swarm that owns it now, then drops them. Nothing is dropped unless
// every push was acknowledged.
func (s *Swarm) evacuate(ctx context.Context, gen int) error {
	s.mu.RLock()
	ring, ourID, lower, upper := s.ring, s.ourID, s.lower, s.upper
	s.mu.RUnlock()
	if ourID != registry.NoSwarm && lower == upper {
		return nil // the whole ring is ours
	}
	if len(ring.IDs) == 0 {
		return errors.New("no swarm in the network to hand messages to")
	}
	from, to := upper, lower // the complement of (lower, upper]
	if ourID == registry.NoSwarm {
		from, to = 0, 0 // we own nothing: everything goes
	}
	pushed := map[string]bool{}
	tracking := true // false once pushed would outgrow maxTracked
	var mu sync.Mutex
	total := 0
	// Writes may still land in the range while we push (peers with an
	// older view); a second walk sends those before anything is dropped.
	for pass := 0; pass < 3; pass++ {
		n := 0
		err := s.streamBatches(ctx, from, to, func(m storage.Message) bool {
			mu.Lock()
			defer mu.Unlock()
			return !pushed[m.Hash] && ring.Owner(m.Owner) != ourID
		}, func(ctx context.Context, blob []byte, hashes []string) error {
			ms, err := DecodeBlob(blob)
			if err != nil || len(ms) == 0 {
				return fmt.Errorf("re-read batch: %v", err)
			}
			// A batch holds messages for several swarms; split it by owner.
			byOwner := map[uint64][]storage.Message{}
			for _, m := range ms {
				id := ring.Owner(m.Owner)
				byOwner[id] = append(byOwner[id], m)
			}
			for id, group := range byOwner {
				if err := s.pushToSwarm(ctx, ring.Members[id], EncodeBlob(group)); err != nil {
					return fmt.Errorf("push to swarm %s: %w", hexID(id), err)
				}
			}
			mu.Lock()
			if tracking && len(pushed)+len(hashes) > maxTracked {
				tracking = false
				clear(pushed)
			}
			if tracking {
				for _, h := range hashes {
					pushed[h] = true
				}
			}
			n += len(hashes)
			mu.Unlock()
			return nil
		}, nil)
		if err != nil {
			return err
		}
		total += n
		if s.currentGen() != gen {
			return errStale
		}
		if n == 0 || !tracking {
			// Without the pushed set a second walk would resend
			// everything; a handover this large accepts the (narrow)
			// window in which a late write could be dropped unpushed.
			break
		}
	}
	dropped, err := s.cfg.Store.DropRange(ctx, from, to)
	if err != nil {
		return fmt.Errorf("drop handed-over messages: %w", err)
	}
	if total > 0 || dropped > 0 {
		s.log.Info("handover complete", "pushed", total, "dropped", dropped)
	}
	return nil
}

func (s *Swarm) currentGen() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.evacGen
}

// pushToSwarm sends one blob to every member, retrying each a few times.
func (s *Swarm) pushToSwarm(ctx context.Context, members []registry.Node, blob []byte) error {
	if len(members) == 0 {
		return errors.New("swarm has no members")
	}
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 1; ; attempt++ {
				err := s.sendData(ctx, m, blob)
				if err == nil {
					return
				}
				if attempt == 3 || ctx.Err() != nil {
					errs[i] = fmt.Errorf("%s: %w", m, err)
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(backoff(attempt)):
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
