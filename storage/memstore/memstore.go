// Package memstore is an in-memory storage.Store: the reference semantics
// the bbolt engine is checked against, and a fast fake for unit tests of the
// RPC, swarm and onion layers. Nothing survives Close.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/snodebox/snodebox/storage"
)

type entry struct {
	m   storage.Message
	seq uint64 // global insertion order
}

type ownerNS struct {
	owner storage.Account
	ns    storage.Namespace
}

// Store is the in-memory engine. The zero value is not usable; call New.
type Store struct {
	mu       sync.Mutex
	closed   bool
	capBytes int64 // 0 = no cap
	seq      uint64
	bytes    int64 // accounted size of all messages
	byHash   map[string]*entry
	byBox    map[ownerNS]map[string]*entry
	owners   map[storage.Account]int // messages per owner
	revoked  map[storage.Account][]storage.Revocation
	stats    storage.Stats
}

var _ storage.Store = (*Store)(nil)

// New returns an empty store without a size cap.
func New() *Store { return NewWithCap(0) }

// NewWithCap returns an empty store that refuses stores with storage.ErrFull
// once the accounted size of its messages (spec §4.2 accounting) would exceed
// capBytes; 0 means no cap. Tests of the "database full" paths use it.
func NewWithCap(capBytes int64) *Store {
	return &Store{
		capBytes: capBytes,
		byHash:   map[string]*entry{},
		byBox:    map[ownerNS]map[string]*entry{},
		owners:   map[storage.Account]int{},
		revoked:  map[storage.Account][]storage.Revocation{},
	}
}

// size is a message's accounted size (storage.RetrieveCost), which the
// cap applies to as well.
func size(m storage.Message) int64 { return storage.RetrieveCost(len(m.Hash), len(m.Data)) }

func (s *Store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return storage.ErrClosed
	}
	return nil
}

func (s *Store) insert(m storage.Message) {
	s.seq++
	m.Data = bytes.Clone(m.Data)
	e := &entry{m: m, seq: s.seq}
	s.byHash[m.Hash] = e
	k := ownerNS{m.Owner, m.Namespace}
	box := s.byBox[k]
	if box == nil {
		box = map[string]*entry{}
		s.byBox[k] = box
	}
	box[m.Hash] = e
	s.owners[m.Owner]++
	s.bytes += size(m)
	s.stats.Stores++
}

func (s *Store) remove(e *entry) {
	delete(s.byHash, e.m.Hash)
	k := ownerNS{e.m.Owner, e.m.Namespace}
	if box := s.byBox[k]; box != nil {
		delete(box, e.m.Hash)
		if len(box) == 0 {
			delete(s.byBox, k)
		}
	}
	if s.owners[e.m.Owner]--; s.owners[e.m.Owner] <= 0 {
		delete(s.owners, e.m.Owner)
	}
	s.bytes -= size(e.m)
}

func (s *Store) full(m storage.Message) bool {
	return s.capBytes > 0 && s.bytes+size(m) > s.capBytes
}

func withHash(m storage.Message) storage.Message {
	if m.Hash == "" {
		m.Hash = storage.MessageHash(m.Owner, m.Namespace, m.Data)
	}
	return m
}

// Store implements storage.Store.
func (s *Store) Store(ctx context.Context, m storage.Message) (bool, int64, error) {
	if err := s.begin(ctx); err != nil {
		return false, 0, err
	}
	defer s.mu.Unlock()
	m = withHash(m)
	if e, ok := s.byHash[m.Hash]; ok {
		if m.Expiry > e.m.Expiry {
			e.m.Expiry = m.Expiry
		}
		return true, e.m.Expiry, nil
	}
	if s.full(m) {
		return false, 0, storage.ErrFull
	}
	if m.Namespace.PublicOutbox() {
		for _, e := range s.byBox[ownerNS{m.Owner, m.Namespace}] {
			s.remove(e)
		}
	}
	s.insert(m)
	return false, m.Expiry, nil
}

// StoreBatch implements storage.Store. In a public outbox the message with
// the later timestamp wins, so a replayed older copy from a peer cannot
// replace the owner's current one.
func (s *Store) StoreBatch(ctx context.Context, ms []storage.Message) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for _, m := range ms {
		m = withHash(m)
		if _, ok := s.byHash[m.Hash]; ok {
			continue
		}
		if s.full(m) {
			return n, storage.ErrFull
		}
		if m.Namespace.PublicOutbox() {
			box := s.byBox[ownerNS{m.Owner, m.Namespace}]
			newer := false
			for _, e := range box {
				if e.m.Timestamp > m.Timestamp {
					newer = true
				}
			}
			if newer {
				continue
			}
			for _, e := range box {
				s.remove(e)
			}
		}
		s.insert(m)
		n++
	}
	return n, nil
}

func sortedBox(box map[string]*entry) []*entry {
	es := make([]*entry, 0, len(box))
	for _, e := range box {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].seq < es[j].seq })
	return es
}

func cloneMsg(m storage.Message) storage.Message {
	m.Data = bytes.Clone(m.Data)
	return m
}

// Retrieve implements storage.Store. maxSize <= 0 means no size limit.
func (s *Store) Retrieve(ctx context.Context, owner storage.Account, ns storage.Namespace, lastHash string, maxCount int, maxSize int64) ([]storage.Message, bool, error) {
	if err := s.begin(ctx); err != nil {
		return nil, false, err
	}
	defer s.mu.Unlock()
	box := s.byBox[ownerNS{owner, ns}]
	es := sortedBox(box)
	start := 0
	if last, ok := box[lastHash]; ok && lastHash != "" {
		start = sort.Search(len(es), func(i int) bool { return es[i].seq > last.seq })
	}
	var out []storage.Message
	page := storage.RetrievePage{MaxCount: maxCount, MaxSize: maxSize}
	for i := start; i < len(es); i++ {
		if !page.Take(size(es[i].m)) {
			return out, true, nil
		}
		out = append(out, cloneMsg(es[i].m))
	}
	return out, false, nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, owner storage.Account, hashes []string) ([]string, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []string
	for _, h := range hashes {
		if e, ok := s.byHash[h]; ok && e.m.Owner == owner {
			s.remove(e)
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out, nil
}

// boxes returns the owner's namespaces selected by f, sorted.
func (s *Store) boxes(owner storage.Account, f storage.NSFilter) []storage.Namespace {
	var nss []storage.Namespace
	if !f.All {
		if _, ok := s.byBox[ownerNS{owner, f.NS}]; ok {
			nss = append(nss, f.NS)
		}
		return nss
	}
	for k := range s.byBox {
		if k.owner == owner {
			nss = append(nss, k.ns)
		}
	}
	slices.Sort(nss)
	return nss
}

// deleteWhere removes the owner's messages in the selected namespaces for
// which match is true and returns namespace → sorted hashes (only
// namespaces where something was deleted appear).
func (s *Store) deleteWhere(owner storage.Account, f storage.NSFilter, match func(storage.Message) bool) map[storage.Namespace][]string {
	out := map[storage.Namespace][]string{}
	for _, ns := range s.boxes(owner, f) {
		for _, e := range s.byBox[ownerNS{owner, ns}] {
			if match(e.m) {
				s.remove(e)
				out[ns] = append(out[ns], e.m.Hash)
			}
		}
	}
	return storage.SortedByNamespace(out)
}

// DeleteAll implements storage.Store.
func (s *Store) DeleteAll(ctx context.Context, owner storage.Account, f storage.NSFilter) (map[storage.Namespace][]string, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.deleteWhere(owner, f, func(storage.Message) bool { return true }), nil
}

// DeleteBefore implements storage.Store.
func (s *Store) DeleteBefore(ctx context.Context, owner storage.Account, f storage.NSFilter, before int64) (map[storage.Namespace][]string, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.deleteWhere(owner, f, func(m storage.Message) bool { return m.Timestamp <= before }), nil
}

// ExpireAll implements storage.Store.
func (s *Store) ExpireAll(ctx context.Context, owner storage.Account, f storage.NSFilter, expiry int64) (map[storage.Namespace][]string, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := map[storage.Namespace][]string{}
	for _, ns := range s.boxes(owner, f) {
		for _, e := range s.byBox[ownerNS{owner, ns}] {
			if e.m.Expiry > expiry {
				e.m.Expiry = expiry
				out[ns] = append(out[ns], e.m.Hash)
			}
		}
	}
	return storage.SortedByNamespace(out), nil
}

// UpdateExpiry implements storage.Store. A hash named twice is applied in
// request order and reported once.
func (s *Store) UpdateExpiry(ctx context.Context, owner storage.Account, hashes []string, expiries []int64, mode storage.ExpiryMode) ([]storage.ExpiryUpdate, error) {
	if len(hashes) != len(expiries) {
		return nil, fmt.Errorf("update expiry: %d hashes but %d expiries", len(hashes), len(expiries))
	}
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var us storage.ExpiryUpdates
	for i, h := range hashes {
		if e, ok := s.byHash[h]; ok && e.m.Owner == owner {
			e.m.Expiry, _ = us.Apply(h, e.m.Expiry, expiries[i], mode)
		}
	}
	return us.List(), nil
}

// GetExpiries implements storage.Store.
func (s *Store) GetExpiries(ctx context.Context, owner storage.Account, hashes []string) (map[string]int64, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := map[string]int64{}
	for _, h := range hashes {
		if e, ok := s.byHash[h]; ok && e.m.Owner == owner {
			out[h] = e.m.Expiry
		}
	}
	return out, nil
}

// Revoke implements storage.Store.
func (s *Store) Revoke(ctx context.Context, owner storage.Account, tokens [][]byte, now int64) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.revoked[owner] = storage.Revoke(s.revoked[owner], tokens, now)
	return nil
}

// Unrevoke implements storage.Store.
func (s *Store) Unrevoke(ctx context.Context, owner storage.Account, tokens [][]byte) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	list, n := storage.Unrevoke(s.revoked[owner], tokens)
	if len(list) == 0 {
		delete(s.revoked, owner)
	} else {
		s.revoked[owner] = list
	}
	return n, nil
}

// Revoked implements storage.Store: oldest revocation first.
func (s *Store) Revoked(ctx context.Context, owner storage.Account) ([][]byte, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out [][]byte
	for _, r := range s.revoked[owner] {
		out = append(out, bytes.Clone(r.Token))
	}
	return out, nil
}

// IsRevoked implements storage.Store.
func (s *Store) IsRevoked(ctx context.Context, owner storage.Account, token []byte) (bool, error) {
	if err := s.begin(ctx); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	return storage.IsRevoked(s.revoked[owner], token), nil
}

// Prune implements storage.Store.
func (s *Store) Prune(ctx context.Context, now int64) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.byHash {
		if e.m.Expiry <= now {
			s.remove(e)
			n++
		}
	}
	s.stats.Pruned += int64(n)
	s.stats.LastPrune = now
	return n, nil
}

// inRange lists the messages whose owner position is in (lower, upper],
// ordered by position, owner, insertion.
func (s *Store) inRange(lower, upper uint64) []*entry {
	var es []*entry
	for _, e := range s.byHash {
		if storage.InRange(storage.Position(e.m.Owner.Key), lower, upper) {
			es = append(es, e)
		}
	}
	sort.Slice(es, func(i, j int) bool {
		a, b := es[i], es[j]
		pa, pb := storage.Position(a.m.Owner.Key), storage.Position(b.m.Owner.Key)
		if pa != pb {
			return pa < pb
		}
		if c := bytes.Compare(a.m.Owner.Bytes(), b.m.Owner.Bytes()); c != 0 {
			return c < 0
		}
		return a.seq < b.seq
	})
	return es
}

// ForEach implements storage.Store. fn runs without the lock held, so it
// may call back into the store.
func (s *Store) ForEach(ctx context.Context, lower, upper uint64, fn func(storage.Message) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	es := s.inRange(lower, upper)
	ms := make([]storage.Message, len(es))
	for i, e := range es {
		ms[i] = cloneMsg(e.m)
	}
	s.mu.Unlock()
	for _, m := range ms {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// DropRange implements storage.Store.
func (s *Store) DropRange(ctx context.Context, lower, upper uint64) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	es := s.inRange(lower, upper)
	for _, e := range es {
		s.remove(e)
	}
	return len(es), nil
}

// Stats implements storage.Store. DBBytes is the accounted message size.
func (s *Store) Stats() storage.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Messages = int64(len(s.byHash))
	st.Accounts = int64(len(s.owners))
	st.DBBytes = s.bytes
	st.CapBytes = s.capBytes
	return st
}

// Close implements storage.Store; later calls fail with storage.ErrClosed.
// Closing twice is harmless.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
