package msgstore

import (
	"fmt"
	"runtime"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/snodebox/snodebox/storage"
)

// ---- writes: the commit loop ----
//
// One goroutine owns the write side: the bbolt write transaction that
// stays open between checkpoints, the redo log (redolog.go), the flight
// (records being written and synced on another goroutine) and the forming
// group (writes applied to the transaction since the flight left). Each
// write is applied as it arrives; when the flight lands, its stores are
// answered and the forming group's records leave as the next flight. So
// a batch is everything that arrived during the previous sync (group
// commit without a timer: a lone writer's record leaves at once), and the
// CPU work of applying it overlaps that sync instead of following it.
//
// A store is answered once its record is synced; any other write (delete,
// expire, revoke, prune, a batch from a peer) commits the transaction (a
// checkpoint), and so do a timer and a full log.

// op is one write, or a read that must see acknowledged stores. fn runs
// inside the write transaction shared with other ops; it reports its own
// outcome through its closure and returns an error only when the
// transaction must be abandoned. It may run more than once (a transaction
// that is thrown away is rebuilt and the batch applied again), so it must
// set its results from scratch each time. after runs once the op is
// durable.
type op struct {
	fn    func(tx *bolt.Tx) error
	after func()
	size  int
	err   chan error

	// redo marks a store: its log record. fn sets logged when the store
	// changed the database, so the record must be in the log before the
	// store is acknowledged. Any other write is made durable by a
	// checkpoint.
	redo   []byte
	logged bool
	owner  storage.Account

	// read: fn only reads. It runs at once and is answered once
	// everything it may have seen is durable.
	read bool

	failed error
}

// flight is a batch whose records are being written and synced while the
// loop applies the next batch.
type flight struct {
	writes, reads []*op
	buf           []byte
	recs          []redoRecord
	done          chan error
}

// write runs fn in a durable write transaction.
func (s *Store) write(size int, fn func(tx *bolt.Tx) error, after func()) error {
	if s.batch {
		if err := s.db.Batch(func(tx *bolt.Tx) error {
			s.beginTx(tx)
			return fn(tx)
		}); err != nil {
			return err
		}
		s.fsyncs.Add(1) // an over-count when calls shared a commit; benchmarks only
		if after != nil {
			after()
		}
		return nil
	}
	return s.submit(&op{fn: fn, after: after, size: size})
}

func (s *Store) submit(o *op) error {
	o.err = make(chan error, 1)
	select {
	case s.queue <- o:
	case <-s.stop:
		return storage.ErrClosed
	}
	return <-o.err
}

const (
	// checkpointInterval bounds how long acknowledged stores live only in
	// the redo log and the open transaction (and so how much a restart
	// replays); checkpointBytes bounds the log and the transaction's dirty
	// pages, which live in memory.
	//
	// checkpointBytes trades heap for CPU: the open transaction's
	// materialised B-tree nodes are live heap, and each checkpoint rewrites
	// the leaves it touched and their branches. Before the hash index got
	// its tail (hashtail.go) a store touched a random index leaf (~12 KB of
	// inodes), and 128 KiB was needed to keep a store load under 40 MiB.
	// Now the touched leaves are few, and interleaved BenchmarkSnoded runs
	// at 100,000 held gave (node CPU per store, stores/s at 64 clients,
	// VmRSS peak): 128 KiB 207–231 µs, 4,774–5,184/s, 31.5–32.2 MiB;
	// 256 KiB 188–197 µs, 5,799–5,933/s, 32.8–33.0 MiB; 512 KiB
	// 179–196 µs, 5,634–5,938/s, 32.6–32.9 MiB. Earlier, 32 MiB quadrupled
	// the peak and halved the store rate: the collector, held to the
	// board's soft limit, ran almost without pause.
	checkpointInterval = 200 * time.Millisecond
	checkpointBytes    = 512 << 10
	// trimEvery: how often a checkpoint also hands back the database
	// pages this process mapped (see trim). Under a store load every fault
	// maps 16 neighbouring pages, so RSS climbs by tens of MiB a second
	// without it; trimming between checkpoints as well (every 25 ms) took
	// RSS down by 3 MiB more but cost 45 % more CPU per store in faults.
	trimEvery = 0
)

// checkpointEvery and checkpointAt are the cadence in force: the constants
// above unless a test holds checkpoints off to look at the log alone.
func (s *Store) checkpointEvery() time.Duration {
	if s.opts.noCheckpoints {
		return time.Hour
	}
	return checkpointInterval
}

func (s *Store) checkpointAt() int64 {
	if s.opts.noCheckpoints {
		return 1 << 40
	}
	return checkpointBytes
}

func (s *Store) commitLoop() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	for {
		var landed <-chan error
		if s.flight != nil {
			landed = s.flight.done
		}
		// A forming group at its bound takes no more until the flight
		// lands: callers wait in the queue, and memory stays bounded.
		queue := s.queue
		if len(s.forming.writes) >= maxQueueOps || s.forming.size >= maxQueueBytes {
			queue = nil
		}
		select {
		case o := <-queue:
			s.accept(o)
			s.drain()
		case err := <-landed:
			s.land(err)
		case <-timer.C:
			armed = false
			s.settle()
			s.commitForming()
		case <-s.stop:
			// The gate guarantees no writer is left waiting.
			s.settle()
			s.commitForming()
			return
		}
		if s.flight == nil {
			if len(s.forming.writes) > 0 {
				// Before a batch leaves, let writers that are already
				// runnable (the rest of a peer's forwarded batch, clients
				// answered by the last flight) reach the queue: they then
				// share this sync instead of waiting for the next one. An
				// idle node has nothing else runnable, and the yield returns
				// at once. Interleaved runs: 4.6-5.2 instead of 2.8-3.2
				// stores per sync on the members of a 3-node swarm, and on a
				// lone node 191 against 199 µs of CPU per store (five runs
				// each, 16 and 64 clients).
				runtime.Gosched()
				s.drain()
			}
			s.launch()
		}
		switch {
		case s.tx == nil && armed:
			timer.Stop()
			armed = false
		case s.tx != nil && !armed:
			timer.Reset(s.checkpointEvery())
			armed = true
		}
	}
}

// drain accepts what is waiting in the queue, up to the forming group's
// bound.
func (s *Store) drain() {
	for len(s.forming.writes) < maxQueueOps && s.forming.size < maxQueueBytes {
		select {
		case o := <-s.queue:
			s.accept(o)
		default:
			return
		}
	}
}

// group is the forming group: writes applied to the open transaction
// whose records have not left yet, and reads that may have seen them.
type group struct {
	writes, reads []*op
	size          int
}

// accept runs one op: a read at once, a write applied to the open
// transaction.
func (s *Store) accept(o *op) {
	if o.read {
		o.failed = s.runRead(o.fn)
		switch {
		case len(s.forming.writes) > 0:
			s.forming.reads = append(s.forming.reads, o)
		case s.flight != nil:
			s.flight.reads = append(s.flight.reads, o)
		default:
			answer([]*op{o})
		}
		return
	}
	if err := s.applyNew(o); err != nil {
		o.failed = err
		answer([]*op{o})
		return
	}
	s.forming.writes = append(s.forming.writes, o)
	s.forming.size += o.size
	if o.redo == nil {
		// Not a store: only a commit makes it durable.
		s.settle()
		s.commitForming()
	}
}

// applyNew applies o to the open transaction. If o fails, the transaction
// it poisoned is thrown away and rebuilt without it: from the log, then
// the forming group again.
func (s *Store) applyNew(o *op) error {
	tx, err := s.writeTx()
	if err != nil {
		return err
	}
	if err = s.apply(tx, o); err == nil {
		return nil
	}
	s.discard()
	for {
		tx, terr := s.writeTx()
		if terr != nil {
			failAll(s.forming.writes, terr)
			s.finishForming()
			return err
		}
		ok := true
		for i, f := range s.forming.writes {
			if ferr := s.apply(tx, f); ferr != nil {
				f.failed = ferr
				answer([]*op{f})
				s.forming.writes = slices.Delete(s.forming.writes, i, i+1)
				s.discard()
				ok = false
				break
			}
		}
		if ok {
			// The forming group's reads may have seen the culprit's
			// half-done work.
			for _, r := range s.forming.reads {
				r.failed = s.runRead(r.fn)
			}
			return err
		}
	}
}

// launch sends the forming group's records on a flight (the caller has
// seen the last one land), or commits the transaction when the log's
// round is full.
func (s *Store) launch() {
	if len(s.forming.writes) == 0 && len(s.forming.reads) == 0 {
		return
	}
	if s.log.roundBytes >= s.checkpointAt() {
		s.commitForming()
		return
	}
	for _, o := range s.forming.writes {
		if o.failed == nil && o.logged {
			s.log.add(o.redo)
		}
	}
	if !s.log.pending() {
		// Nothing changed (stores of messages already held): nothing
		// to wait for.
		s.finishForming()
		return
	}
	f := &flight{writes: s.forming.writes, reads: s.forming.reads, done: make(chan error, 1)}
	s.forming = group{}
	var off int64
	f.buf, f.recs, off = s.log.take()
	go func() { f.done <- s.log.writeAt(f.buf, off) }()
	s.flight = f
}

// settle waits for the flight, if any, and lands it.
func (s *Store) settle() {
	if s.flight != nil {
		s.land(<-s.flight.done)
	}
}

// land takes the flight's outcome. Synced: its stores are acknowledged.
// Not synced: its records are not in the log, so the open transaction,
// which holds its stores and the forming group's, is committed in their
// place; if that fails (or the transaction was already thrown away) they
// fail.
func (s *Store) land(syncErr error) {
	f := s.flight
	s.flight = nil
	s.log.landed(f.buf, f.recs, syncErr)
	if syncErr == nil {
		s.fsyncs.Add(1)
		answer(f.writes)
		answer(f.reads)
		return
	}
	s.forming.writes = append(f.writes, s.forming.writes...)
	s.forming.reads = append(f.reads, s.forming.reads...)
	if s.tx == nil {
		failAll(s.forming.writes, syncErr)
		s.finishForming()
		return
	}
	s.commitForming()
}

// commitForming checkpoints the open transaction and answers the forming
// group by the outcome. The caller has settled the flight.
func (s *Store) commitForming() {
	failAll(s.forming.writes, s.checkpoint())
	s.finishForming()
}

// finishForming answers the forming group. Reads run again if a write
// they may have seen failed.
func (s *Store) finishForming() {
	g := s.forming
	s.forming = group{}
	answer(g.writes)
	for _, o := range g.writes {
		if o.failed != nil {
			for _, r := range g.reads {
				r.failed = s.runRead(r.fn)
			}
			break
		}
	}
	answer(g.reads)
}

// failAll fails the ops that did not fail on their own, when err says the
// transaction they were in is lost.
func failAll(ops []*op, err error) {
	if err == nil {
		return
	}
	for _, o := range ops {
		if o.failed == nil {
			o.failed = err
		}
	}
}

func answer(ops []*op) {
	for _, o := range ops {
		if o.failed != nil {
			o.err <- o.failed
			continue
		}
		if o.after != nil {
			o.after()
		}
		o.err <- nil
	}
}

// apply runs one op in tx; a panic in it is an error like any other, so a
// bug in one op cannot take the commit loop (and every later write) down.
func (s *Store) apply(tx *bolt.Tx, o *op) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("write panicked: %v", r)
		}
	}()
	if o.redo != nil {
		o.logged = false
		s.markDirty(o.owner)
	}
	return o.fn(tx)
}

// runRead runs a read op in the open write transaction, which holds the
// acknowledged stores not yet checkpointed, or in a read transaction.
func (s *Store) runRead(fn func(tx *bolt.Tx) error) (err error) {
	if s.tx == nil && len(s.log.round) > 0 {
		// A checkpoint failed: acknowledged stores are in the log alone
		// until a transaction is rebuilt from it.
		if _, err := s.writeTx(); err != nil {
			return err
		}
	}
	if s.tx == nil {
		return s.db.View(fn)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("read panicked: %v", r)
		}
	}()
	return fn(s.tx)
}

// writeTx returns the open write transaction, beginning one (and applying
// the log's current round to it) if there is none.
func (s *Store) writeTx() (*bolt.Tx, error) {
	if s.tx != nil {
		return s.tx, nil
	}
	// A transaction thrown away with a flight under way held its stores:
	// wait for the flight, so the round it joins is rebuilt whole (if its
	// sync failed, its stores fail: nothing holds them any more).
	if s.flight != nil {
		f := s.flight
		s.flight = nil
		err := <-f.done
		s.log.landed(f.buf, f.recs, err)
		if err == nil {
			s.fsyncs.Add(1)
		}
		failAll(f.writes, err)
		answer(f.writes)
		if err != nil {
			// Its reads may have seen stores that are gone.
			for _, r := range f.reads {
				r.failed = s.db.View(r.fn)
			}
		}
		answer(f.reads)
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return nil, fmt.Errorf("begin write: %w", err)
	}
	s.beginTx(tx)
	if s.tailStale {
		if err := s.rebuildTail(tx); err != nil {
			tx.Rollback()
			return nil, err
		}
		s.tailStale = false
	}
	if err := s.replay(tx, s.log.round); err != nil {
		tx.Rollback()
		return nil, err
	}
	s.tx = tx
	return tx, nil
}

// replay applies logged stores to tx. They were acknowledged, so they go
// in whatever the size cap says now.
func (s *Store) replay(tx *bolt.Tx, recs []redoRecord) error {
	for _, r := range recs {
		m, err := decodeRedo(r.payload)
		if err != nil {
			return fmt.Errorf("redo record %d: %w", r.lsn, err)
		}
		if _, err := s.wtx(tx).store(m, r.payload, false); err != nil {
			return fmt.Errorf("redo record %d: %w", r.lsn, err)
		}
		s.markDirty(m.Owner)
	}
	return nil
}

// discard throws the open transaction away; the next writeTx rebuilds it.
func (s *Store) discard() {
	if s.tx != nil {
		s.tx.Rollback()
		s.tx = nil
		s.tailStale = true
	}
}

// checkpoint commits the open transaction with the number of the last
// logged record it holds, then starts a new log round. The caller has
// settled the flight: the log is rewound from the start. On failure bbolt
// has rolled the transaction back; the log's round is kept for the next.
func (s *Store) checkpoint() error {
	if s.tx == nil {
		return nil
	}
	tx := s.tx
	s.tx = nil
	// Until the commit lands, the tail holds entries of a transaction
	// that may be lost.
	s.tailStale = true
	if err := putU64(tx.Bucket(bktMeta), keyLogged, s.log.lsn); err != nil {
		tx.Rollback()
		return fmt.Errorf("checkpoint: %w", err)
	}
	mg, err := s.merge(tx, false)
	if err != nil {
		tx.Rollback()
		return fmt.Errorf("checkpoint: %w", err)
	}
	txid := tx.ID()
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	s.tailStale = false
	s.tail.retire(mg, txid)
	s.fsyncs.Add(1)
	s.log.checkpointed()
	s.maybeTrim()
	s.dirtyMu.Lock()
	clear(s.dirty)
	s.dirtyMu.Unlock()
	return nil
}

// maybeTrim trims the mapping if trimEvery has passed since the last time.
func (s *Store) maybeTrim() {
	if now := time.Now(); now.Sub(s.lastTrim) >= trimEvery {
		s.lastTrim = now
		s.trim()
	}
}

// markDirty notes that owner has stores in the open transaction, which
// reads of that account must go through the commit loop to see.
func (s *Store) markDirty(owner storage.Account) {
	s.dirtyMu.Lock()
	s.dirty[owner] = struct{}{}
	s.dirtyMu.Unlock()
}

// isDirty reports whether owner (nil: any account) has stores that are
// not checkpointed.
func (s *Store) isDirty(owner *storage.Account) bool {
	s.dirtyMu.Lock()
	defer s.dirtyMu.Unlock()
	if owner == nil {
		return len(s.dirty) > 0
	}
	_, ok := s.dirty[*owner]
	return ok
}
