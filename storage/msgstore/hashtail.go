package msgstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// ---- the hash index's tail ----
//
// Message hashes are random, so a store's hash-index entry lands on a
// random leaf of the index: bbolt reads that whole leaf into the heap (a
// ~12 KB node for ~100 keys) and the checkpoint writes it back as a fresh
// 4 KiB page, one leaf per store. BenchmarkSnoded with that put left out
// ran at 224 instead of 291 µs of node CPU per store, with 10 MiB less
// peak RSS.
//
// So a new message's entry waits in the tail, an in-memory map, and
// reaches the index in sorted runs: the key space is cut into tailSlices
// slices, and each checkpoint merges one of them (round robin), so an
// index leaf takes a run of entries in one rewrite. The tail holds about
// tailSlices checkpoints' stores; past tailCap entries a checkpoint merges
// more slices.
//
// The tail is exact for the open write transaction: an insert adds its
// entry, a delete removes it, and when a transaction is thrown away the
// tail is made again from the database (rebuildTail) before the log's
// stores are replayed into the new one. So a merge trusts its entries and
// reads no message records.
//
// Durability needs no log of its own: each slice has a mark in the meta
// bucket, committed with its merge, saying the index holds every message
// of that slice up to that seq. Open rebuilds the tail from the message
// records past the marks (at most about tailSlices checkpoints of them).
//
// Readers in their own read transactions consult the tail too. A merged
// slice stays readable in the tail until the merge after it commits, and
// a reader whose snapshot is older than merges already dropped from the
// tail retries with a new snapshot (errSnapshotBehind): it could miss an
// entry that is in neither its snapshot of the index nor the tail. A
// reader racing a delete that has not committed yet may already miss the
// message: it sees the delete as done a moment early.

const (
	// tailSlices: more slices put more entries on each index leaf per
	// merge (the tail holds more) at the cost of tail memory, ~60 bytes an
	// entry.
	tailSlices = 64
	// tailCap bounds the tail (~2 MiB) however fast stores arrive.
	tailCap = 32 << 10
)

// keyTailMarks holds the tailSlices marks, 8 bytes each.
var keyTailMarks = []byte("tailmarks")

// errSnapshotBehind: a read transaction began before a merge whose
// entries have since left the tail; run it again.
var errSnapshotBehind = errors.New("read snapshot predates a hash index merge")

type hashTail struct {
	mu sync.Mutex
	// live: prefix → seqs of messages stored since their slice's mark.
	live [tailSlices]map[uint64][]uint64
	n    int
	// old: the slices the last merge moved into the index (commit oldTx),
	// for readers whose snapshot predates that commit.
	old   []map[uint64][]uint64
	oldTx int
	// behind: a read transaction with an ID below this may lack merged
	// entries that the tail no longer holds.
	behind int

	// Owned by the commit loop (and Open, Close).
	marks [tailSlices]uint64
	next  int
}

func tailSlice(p uint64) int { return int(p >> (64 - 6)) }

func prefixOf(hash string) uint64 {
	p := hashPrefix(hash)
	return binary.BigEndian.Uint64(p[:])
}

// add notes a new message's entry. A replayed store adds the same entry
// again: that is a no-op.
func (t *hashTail) add(p, seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sl := tailSlice(p)
	if t.live[sl] == nil {
		t.live[sl] = map[uint64][]uint64{}
	}
	seqs := t.live[sl][p]
	if slices.Contains(seqs, seq) {
		return
	}
	t.live[sl][p] = append(seqs, seq)
	t.n++
}

// remove drops a deleted message's entry, if it is in the tail.
func (t *hashTail) remove(p, seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.live[tailSlice(p)]
	seqs := m[p]
	i := slices.Index(seqs, seq)
	if i < 0 {
		return
	}
	if len(seqs) == 1 {
		delete(m, p)
	} else {
		m[p] = slices.Delete(seqs, i, i+1)
	}
	t.n--
}

// find lists the tail's candidates for prefix p, and the ID below which a
// read snapshot may have missed some.
func (t *hashTail) find(p uint64) ([]uint64, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []uint64
	if m := t.live[tailSlice(p)]; m != nil {
		out = append(out, m[p]...)
	}
	for _, m := range t.old {
		out = append(out, m[p]...)
	}
	return out, t.behind
}

func (t *hashTail) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// merge moves tail slices into the index inside tx: the next slice in
// turn, more while the tail is over its cap, every slice when all is set.
// The tail itself changes only once tx has committed (retire).
func (s *Store) merge(tx *bolt.Tx, all bool) (tailMerge, error) {
	t := &s.tail
	mg := tailMerge{marks: t.marks}
	idx, met := tx.Bucket(bktHash), tx.Bucket(bktMeta)
	seq := getU64(met, keySeq)
	left := t.size()
	for i := 0; i < tailSlices; i++ {
		if i > 0 && !all && left <= tailCap {
			break
		}
		sl := (t.next + i) % tailSlices
		t.mu.Lock()
		m := t.live[sl]
		t.mu.Unlock()
		keys := make([]uint64, 0, len(m))
		for p := range m {
			keys = append(keys, p)
		}
		slices.Sort(keys)
		for _, p := range keys {
			for _, q := range m[p] {
				left--
				// bbolt holds on to the key until the commit.
				key := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), p), q)
				if err := idx.Put(key, empty); err != nil {
					return mg, fmt.Errorf("merge hash index: %w", err)
				}
			}
		}
		mg.marks[sl] = seq
		mg.slices = append(mg.slices, sl)
	}
	return mg, met.Put(keyTailMarks, encodeMarks(mg.marks))
}

// mergeWholeTail merges every slice in a transaction of its own; the
// commit loop must have no transaction open (it has stopped, or is idle).
func (s *Store) mergeWholeTail() error {
	var mg tailMerge
	var txid int
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		mg, err = s.merge(tx, true)
		txid = tx.ID()
		return err
	})
	if err != nil {
		return err
	}
	s.tail.retire(mg, txid)
	return nil
}

// tailMerge is what a merge did, for retire.
type tailMerge struct {
	slices []int
	marks  [tailSlices]uint64
}

// retire drops the merged slices from the tail once the transaction that
// merged them (ID txid) has committed.
func (t *hashTail) retire(mg tailMerge, txid int) {
	if len(mg.slices) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.behind = t.oldTx
	t.old = t.old[:0]
	for _, sl := range mg.slices {
		if m := t.live[sl]; m != nil {
			t.old = append(t.old, m)
			for _, seqs := range m {
				t.n -= len(seqs)
			}
		}
		t.live[sl] = nil
	}
	t.oldTx = txid
	t.marks = mg.marks
	t.next = (mg.slices[len(mg.slices)-1] + 1) % tailSlices
}

func encodeMarks(marks [tailSlices]uint64) []byte {
	b := make([]byte, 0, 8*tailSlices)
	for _, m := range marks {
		b = binary.BigEndian.AppendUint64(b, m)
	}
	return b
}

// loadTail reads the marks (a file without them has a whole index: they
// start at its last seq) and rebuilds the tail from the message records
// past them.
func (s *Store) loadTail(tx *bolt.Tx) error {
	t := &s.tail
	met := tx.Bucket(bktMeta)
	v := met.Get(keyTailMarks)
	switch {
	case v == nil:
		seq := getU64(met, keySeq)
		for i := range t.marks {
			t.marks[i] = seq
		}
		return met.Put(keyTailMarks, encodeMarks(t.marks))
	case len(v) != 8*tailSlices:
		return fmt.Errorf("hash index marks: %d bytes, want %d", len(v), 8*tailSlices)
	}
	for i := range t.marks {
		t.marks[i] = binary.BigEndian.Uint64(v[8*i:])
	}
	return s.rebuildTail(tx)
}

// rebuildTail makes the tail again from the message records past the
// marks, as tx holds them: at open, and when a transaction whose entries
// it took was thrown away.
func (s *Store) rebuildTail(tx *bolt.Tx) error {
	t := &s.tail
	t.mu.Lock()
	t.live = [tailSlices]map[uint64][]uint64{}
	t.n = 0
	t.mu.Unlock()
	from := ^uint64(0)
	for _, m := range t.marks {
		from = min(from, m)
	}
	c := tx.Bucket(bktMsg).Cursor()
	for k, v := c.Seek(seqKey(from + 1)); k != nil; k, v = c.Next() {
		if len(k) != 8 || len(v) < recHeader {
			return fmt.Errorf("message record %x is malformed", k)
		}
		seq := binary.BigEndian.Uint64(k)
		p := prefixOf(string(v[recHashAt : recHashAt+hashLen]))
		if seq > t.marks[tailSlice(p)] {
			t.add(p, seq)
		}
	}
	return nil
}
