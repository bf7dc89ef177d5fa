package msgstore

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	bolt "go.etcd.io/bbolt"
)

// ---- the new-message filter ----
//
// Every store first asks whether its hash is held already, and almost
// every time it is not. Answering that from the index costs a walk to a
// random leaf of it: a page fault on the mapping that the checkpoints keep
// trimming, and a leaf that no other store of the moment wants. A Bloom
// filter over the prefixes of every hash held answers "not held" from
// memory for all but about one store in a hundred.
//
// The filter is the commit loop's own (the dedup check runs there; reads
// by hash are rare and ask the index). It may say "maybe" for a hash that
// is not held (a false positive, a deleted message, a store whose
// transaction was thrown away): that only costs the index walk. It must
// never say "no" for a hash that is held, so every insert adds to it, and
// it is built whole from the index and the tail at open and whenever it
// fills.

const (
	filterBitsPerEntry = 10 // with filterHashes = 7: ~1 % false positives
	filterHashes       = 7
	filterMinBits      = 1 << 20 // 128 KiB
	// filterMaxBits bounds the filter at 4 MiB: past ~3 million messages
	// false positives grow and stores fall back to the index walk more
	// often, as without a filter.
	filterMaxBits = 1 << 25
)

type hashFilter struct {
	words []uint64
	mask  uint64
	// added counts entries since the build (deleted ones included);
	// capacity is what the size was chosen for.
	added, capacity int
}

// newFilter sizes a filter for n entries with room to grow.
func newFilter(n int) *hashFilter {
	want := uint64(max(2*n, 1)) * filterBitsPerEntry
	size := uint64(1) << bits.Len64(want-1)
	size = min(max(size, filterMinBits), filterMaxBits)
	return &hashFilter{
		words:    make([]uint64, size/64),
		mask:     size - 1,
		capacity: int(size / filterBitsPerEntry),
	}
}

// The prefix is already uniform (it is part of a hash digest); the probes
// are double hashing over its two halves, the second made odd.
func (f *hashFilter) add(p uint64) {
	h1, h2 := p, (p>>32|p<<32)|1
	for i := range uint64(filterHashes) {
		b := (h1 + i*h2) & f.mask
		f.words[b/64] |= 1 << (b % 64)
	}
	f.added++
}

func (f *hashFilter) mayHold(p uint64) bool {
	h1, h2 := p, (p>>32|p<<32)|1
	for i := range uint64(filterHashes) {
		b := (h1 + i*h2) & f.mask
		if f.words[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

func (f *hashFilter) full() bool { return f.added >= f.capacity && len(f.words)*64 < filterMaxBits }

// buildFilter makes a filter of every prefix in the index and the tail, as
// tx sees them.
func (s *Store) buildFilter(tx *bolt.Tx) (*hashFilter, error) {
	idx := tx.Bucket(bktHash)
	f := newFilter(int(getU64(tx.Bucket(bktMeta), keyMessages)) + s.tail.size())
	c := idx.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) != 16 {
			return nil, fmt.Errorf("hash index key %x is not a prefix and a seq", k)
		}
		f.add(binary.BigEndian.Uint64(k))
	}
	s.tail.mu.Lock()
	for _, m := range s.tail.live {
		for p := range m {
			f.add(p)
		}
	}
	s.tail.mu.Unlock()
	return f, nil
}

// noteNew records a new message's hash in the tail and the filter,
// building the filter again (from tx) when it is full.
func (s *Store) noteNew(tx *bolt.Tx, p, seq uint64) error {
	s.tail.add(p, seq)
	s.filter.add(p)
	if !s.filter.full() {
		return nil
	}
	f, err := s.buildFilter(tx)
	if err != nil {
		return fmt.Errorf("rebuild hash filter: %w", err)
	}
	s.filter = f
	return nil
}
