package registry

import (
	"bytes"
	"math/bits"
	"slices"
)

// Devnet swarm sizes (DESIGN.md §2).
const (
	IdealSwarmSize = 7
	MinSwarmSize   = 5
	// growAbove: a new swarm forms once the average swarm would exceed this
	// and every swarm, the new one included, can still reach MinSwarmSize.
	// The gap between MinSwarmSize and growAbove is hysteresis: a network
	// hovering around a threshold does not split and merge swarms on every
	// join and leave. Averages stay in [5, 9], centred on the ideal 7.
	growAbove = IdealSwarmSize + 2
)

// SwarmIDAt is the id of the i-th swarm ever formed: the bit-reversed index
// (van der Corput sequence: 0, 2^63, 2^62, 3·2^62, 2^61, …). Every new id
// lands in the middle of one of the largest gaps between existing ids, so
// swarm spaces stay within a factor two of each other, and ids already in
// use never move when swarms are added or removed. Reverse64 is its own
// inverse, which turns an id back into its index.
func SwarmIDAt(i int) uint64 { return bits.Reverse64(uint64(i)) }

func swarmIndex(id uint64) uint64 { return bits.Reverse64(id) }

// AssignSwarms is the devnet registry's swarm assignment. Given the previous
// assignment (nil at start) and the live nodes, it returns each live node's
// swarm id. It is deterministic: the same inputs give the same answer
// whatever their order. It moves as few nodes as it can:
//
//  1. Live nodes keep their previous swarm; new nodes wait in a pool.
//  2. The swarm count k changes only when it must: it shrinks while there
//     are fewer than MinSwarmSize nodes per swarm, and grows while the
//     average exceeds growAbove and k+1 swarms can each have MinSwarmSize.
//     Shrinking dissolves the most recently formed swarms (highest index in
//     the SwarmIDAt sequence), growing adds the lowest unused indices, so
//     the set of ids stays a prefix of the sequence.
//  3. Pool nodes (sorted by key) join the smallest swarm, which fills new
//     swarms from new nodes before anyone is moved.
//  4. Only then are nodes moved, one at a time from the largest swarm to
//     the smallest, while a swarm is below MinSwarmSize (and another can
//     spare a node) or sizes differ by more than two.
//
// With fewer than MinSwarmSize nodes in total there is one small swarm, so a
// devnet of any size serves.
func AssignSwarms(prev map[[32]byte]uint64, live [][32]byte) map[[32]byte]uint64 {
	out := make(map[[32]byte]uint64, len(live))
	if len(live) == 0 {
		return out
	}
	nodes := slices.Clone(live)
	slices.SortFunc(nodes, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	nodes = slices.CompactFunc(nodes, func(a, b [32]byte) bool { return a == b })
	n := len(nodes)

	groups := map[uint64][][32]byte{}
	var pool [][32]byte
	for _, k := range nodes {
		if id, ok := prev[k]; ok && id != NoSwarm {
			groups[id] = append(groups[id], k)
		} else {
			pool = append(pool, k)
		}
	}

	k := max(len(groups), 1)
	for k > 1 && n < MinSwarmSize*k {
		k--
	}
	for n > growAbove*k && n >= MinSwarmSize*(k+1) {
		k++
	}

	// Keep the k existing swarms formed earliest; dissolve the rest.
	existing := make([]uint64, 0, len(groups))
	for id := range groups {
		existing = append(existing, id)
	}
	byIndex := func(a, b uint64) int {
		ia, ib := swarmIndex(a), swarmIndex(b)
		switch {
		case ia < ib:
			return -1
		case ia > ib:
			return 1
		}
		return 0
	}
	slices.SortFunc(existing, byIndex)
	var ids []uint64
	for _, id := range existing {
		if len(ids) < k {
			ids = append(ids, id)
		} else {
			pool = append(pool, groups[id]...)
			delete(groups, id)
		}
	}
	inUse := map[uint64]bool{}
	for _, id := range ids {
		inUse[id] = true
	}
	for i := 0; len(ids) < k; i++ {
		if id := SwarmIDAt(i); !inUse[id] && id != NoSwarm {
			ids = append(ids, id)
			inUse[id] = true
		}
	}
	slices.SortFunc(ids, byIndex)
	slices.SortFunc(pool, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })

	// smallest/largest break ties by formation order so results are stable.
	smallest := func() uint64 {
		best := ids[0]
		for _, id := range ids[1:] {
			if len(groups[id]) < len(groups[best]) {
				best = id
			}
		}
		return best
	}
	largest := func() uint64 {
		best := ids[len(ids)-1]
		for i := len(ids) - 2; i >= 0; i-- {
			if len(groups[ids[i]]) > len(groups[best]) {
				best = ids[i]
			}
		}
		return best
	}
	for _, key := range pool {
		id := smallest()
		groups[id] = append(groups[id], key)
	}
	for {
		lo, hi := smallest(), largest()
		sl, sh := len(groups[lo]), len(groups[hi])
		if !((sl < MinSwarmSize && sh > MinSwarmSize) || sh-sl > 2) {
			break
		}
		// Move the largest swarm's highest key: deterministic, and unrelated
		// to join order so long-lived nodes are not favoured.
		members := groups[hi]
		slices.SortFunc(members, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
		mv := members[len(members)-1]
		groups[hi] = members[:len(members)-1]
		groups[lo] = append(groups[lo], mv)
	}
	for id, members := range groups {
		for _, key := range members {
			out[key] = id
		}
	}
	return out
}
