package swarm

import (
	"slices"

	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
)

// Ring is the sorted set of swarm ids of a snapshot with each swarm's
// members; every mapping question of spec §6.1 is answered from it.
type Ring struct {
	IDs     []uint64 // sorted, unique, never contains registry.NoSwarm
	Members map[uint64][]registry.Node
}

// NewRing groups a snapshot's nodes by swarm id. Nodes in no swarm
// (registry.NoSwarm, decommissioned) own nothing and are left out.
func NewRing(nodes []registry.Node) Ring {
	r := Ring{Members: map[uint64][]registry.Node{}}
	for _, n := range nodes {
		if n.SwarmID == registry.NoSwarm {
			continue
		}
		if _, ok := r.Members[n.SwarmID]; !ok {
			r.IDs = append(r.IDs, n.SwarmID)
		}
		r.Members[n.SwarmID] = append(r.Members[n.SwarmID], n)
	}
	slices.Sort(r.IDs)
	for _, id := range r.IDs {
		slices.SortFunc(r.Members[id], func(a, b registry.Node) int { return compareKeys(a.Ed25519, b.Ed25519) })
	}
	return r
}

func compareKeys(a, b [32]byte) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// SwarmFor is spec §6.1 step 3: the swarm id nearest to pos on the u64 ring,
// ties to the left (the previous id, wrapping). ids must be sorted; with no
// ids the answer is registry.NoSwarm.
func SwarmFor(ids []uint64, pos uint64) uint64 {
	switch len(ids) {
	case 0:
		return registry.NoSwarm
	case 1:
		return ids[0]
	}
	ri, _ := slices.BinarySearch(ids, pos) // first id >= pos
	if ri == len(ids) {
		ri = 0
	}
	li := ri - 1
	if li < 0 {
		li = len(ids) - 1
	}
	right, left := ids[ri], ids[li]
	dr := right - pos // u64 arithmetic wraps, as the spec's distances do
	dl := pos - left
	if dr < dl {
		return right
	}
	return left
}

// SwarmSpace is the range (lower, upper] of positions swarm id owns among
// ids (spec §6.1, newer servers): halfway to each neighbour, wrapping. With a
// single swarm lower == upper, which storage.InRange reads as the whole ring.
func SwarmSpace(ids []uint64, id uint64) (lower, upper uint64) {
	i, found := slices.BinarySearch(ids, id)
	if !found || len(ids) == 0 {
		return 0, 0
	}
	prev := ids[(i+len(ids)-1)%len(ids)]
	next := ids[(i+1)%len(ids)]
	lower = prev + (id-prev)/2
	upper = id + (next-id)/2
	return lower, upper
}

// Owner is the swarm that owns account a.
func (r Ring) Owner(a storage.Account) uint64 { return SwarmFor(r.IDs, storage.Position(a.Key)) }

// SwarmOf returns the swarm a node (by Ed25519 key) is in, NoSwarm if none.
func (r Ring) SwarmOf(ed [32]byte) uint64 {
	for _, id := range r.IDs {
		for _, m := range r.Members[id] {
			if m.Ed25519 == ed {
				return id
			}
		}
	}
	return registry.NoSwarm
}
