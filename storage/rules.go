package storage

import (
	"bytes"
	"slices"
	"sort"
)

// Rules of the Store interface that do not depend on how an engine keeps
// its messages: every engine (memstore, msgstore) applies these, so they
// answer alike by construction and storetest checks the rules once.

// RetrieveCost is what one message counts against a retrieve's max_size
// (spec §4.2): 100 + len(hash) + ⌊len(data)·4/3⌋, the base64 size assumed.
func RetrieveCost(hashLen, dataLen int) int64 {
	return 100 + int64(hashLen) + int64(dataLen)*4/3
}

// RetrievePage applies a retrieve's limits while an engine walks the
// owner's messages in order: at most MaxCount messages (0: no count limit)
// and nothing that would take the page's RetrieveCost past MaxSize (<= 0:
// no size limit), but always the first message (spec §4.2).
type RetrievePage struct {
	MaxCount int
	MaxSize  int64
	n        int
	size     int64
}

// Full reports whether the count limit is reached: the next message, if
// any, is left for a later page.
func (p *RetrievePage) Full() bool { return p.MaxCount > 0 && p.n >= p.MaxCount }

// Take reports whether the next message, costing cost, joins the page and
// counts it if so; false means the page ends before it.
func (p *RetrievePage) Take(cost int64) bool {
	if p.Full() || p.MaxSize > 0 && p.n > 0 && p.size+cost > p.MaxSize {
		return false
	}
	p.n++
	p.size += cost
	return true
}

// SortedByNamespace sorts each namespace's hashes in a DeleteAll,
// DeleteBefore or ExpireAll result, which lists them sorted (the RPC
// layer signs them in that order), and returns it.
func SortedByNamespace(byNS map[Namespace][]string) map[Namespace][]string {
	for _, hs := range byNS {
		slices.Sort(hs)
	}
	return byNS
}

// Changes reports whether an expiry update from cur to want moves the
// expiry under the mode.
func (mode ExpiryMode) Changes(cur, want int64) bool {
	switch mode {
	case ExpiryShorten:
		return want < cur
	case ExpiryExtend:
		return want > cur
	default:
		return want != cur
	}
}

// ExpiryUpdates collects an UpdateExpiry answer. A hash named twice is
// applied in request order and reported once, with the expiry finally in
// force and whether any of its updates changed it. The zero value is empty
// and ready to use.
type ExpiryUpdates struct {
	byHash map[string]*ExpiryUpdate
}

// Apply records an update of an existing hash whose expiry is cur to want
// under mode, and returns the expiry now in force and whether it changed
// (the engine then writes it).
func (us *ExpiryUpdates) Apply(hash string, cur, want int64, mode ExpiryMode) (expiry int64, changed bool) {
	if us.byHash == nil {
		us.byHash = map[string]*ExpiryUpdate{}
	}
	u := us.byHash[hash]
	if u == nil {
		u = &ExpiryUpdate{Hash: hash}
		us.byHash[hash] = u
	}
	if mode.Changes(cur, want) {
		cur, changed = want, true
		u.Changed = true
	}
	u.Expiry = cur
	return cur, changed
}

// List is the answer: every hash that exists, once, sorted by hash.
func (us *ExpiryUpdates) List() []ExpiryUpdate {
	out := make([]ExpiryUpdate, 0, len(us.byHash))
	for _, u := range us.byHash {
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hash < out[j].Hash })
	return out
}

// MaxRevoked is how many subaccount revocations an account keeps (spec
// §4.9).
const MaxRevoked = 50

// Revocation is one revoked subaccount token and when it was revoked (Unix
// ms).
type Revocation struct {
	Token []byte
	At    int64
}

// Revoke adds tokens revoked at now to list (oldest first), as spec §4.9
// has it: a token revoked again moves to its new time, equal times keep
// revoke order (the last revoked is the newest), and only the newest
// MaxRevoked are kept. The tokens are copied.
func Revoke(list []Revocation, tokens [][]byte, now int64) []Revocation {
	for _, t := range tokens {
		list = slices.DeleteFunc(list, func(r Revocation) bool { return bytes.Equal(r.Token, t) })
		list = append(list, Revocation{Token: bytes.Clone(t), At: now})
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].At < list[j].At })
	if len(list) > MaxRevoked {
		list = slices.Clone(list[len(list)-MaxRevoked:])
	}
	return list
}

// Unrevoke removes tokens from list and reports how many were in it.
func Unrevoke(list []Revocation, tokens [][]byte) ([]Revocation, int) {
	n := 0
	for _, t := range tokens {
		before := len(list)
		list = slices.DeleteFunc(list, func(r Revocation) bool { return bytes.Equal(r.Token, t) })
		n += before - len(list)
	}
	return list, n
}

// IsRevoked reports whether token is in list.
func IsRevoked(list []Revocation, token []byte) bool {
	return slices.ContainsFunc(list, func(r Revocation) bool { return bytes.Equal(r.Token, token) })
}
