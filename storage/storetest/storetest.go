// Package storetest is the conformance suite for storage.Store engines: the
// storage effects of spec §2.2, §4.1–§4.9, §5 and §6.1 as the RPC and swarm
// layers rely on them. Every engine's tests call Run (and RunFull when the
// engine has a size cap).
//
// Details the interface comments leave open are pinned here so every engine
// agrees:
//   - Retrieve with maxSize <= 0 has no size limit (maxCount 0: no count limit).
//   - DeleteAll/DeleteBefore/ExpireAll results name only the namespaces where
//     something changed.
//   - StoreBatch leaves existing messages untouched (expiry too); in a public
//     outbox the message with the later timestamp wins.
//   - Returned Data is the caller's to keep: mutating it never alters the store.
//   - After Close every call fails with an error wrapping storage.ErrClosed.
package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/testvectors"
)

// Opener returns a fresh, empty store; the suite closes it.
type Opener func(t *testing.T) storage.Store

// Run checks every Store method against the contract.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"MessageHashVectors", testHashVectors},
		{"StoreDedupeRaisesExpiry", testDedupe},
		{"PublicOutboxKeepsNewest", testPublicOutbox},
		{"StoreBatch", testStoreBatch},
		{"RetrieveInsertionOrder", testRetrieveOrder},
		{"RetrieveLastHash", testRetrieveLastHash},
		{"RetrieveMaxCount", testRetrieveMaxCount},
		{"RetrieveSizeAccounting", testRetrieveSize},
		{"RetrieveCopiesData", testRetrieveCopies},
		{"DeleteOwnerOnly", testDelete},
		{"DeleteAll", testDeleteAll},
		{"DeleteBefore", testDeleteBefore},
		{"ExpireAll", testExpireAll},
		{"UpdateExpiry", testUpdateExpiry},
		{"GetExpiries", testGetExpiries},
		{"Revocations", testRevocations},
		{"RevocationCap", testRevocationCap},
		{"Prune", testPrune},
		{"ForEachRanges", testForEach},
		{"ForEachStopsAndReenters", testForEachStop},
		{"DropRange", testDropRange},
		{"Stats", testStats},
		{"ConcurrentStores", testConcurrent},
		{"CanceledContext", testCanceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			tc.fn(t, s)
		})
	}
	t.Run("Close", func(t *testing.T) { testClose(t, open(t)) })
}

var bg = context.Background()

// Account returns a deterministic 05-account numbered i.
func Account(i int) storage.Account {
	a := storage.Account{Type: 0x05}
	binary.BigEndian.PutUint64(a.Key[24:], uint64(i)+1)
	a.Key[0] = byte(i) ^ 0x5a
	return a
}

// AccountAt returns an account whose swarm position (spec §6.1) is pos.
func AccountAt(pos uint64, salt byte) storage.Account {
	a := storage.Account{Type: 0x05}
	binary.BigEndian.PutUint64(a.Key[0:], pos)
	// Equal words cancel under XOR, so salt both keeps pos and varies the key.
	a.Key[8], a.Key[16] = salt, salt
	return a
}

// Msg builds a message with its spec §5 hash.
func Msg(owner storage.Account, ns storage.Namespace, data string, ts, expiry int64) storage.Message {
	d := []byte(data)
	return storage.Message{
		Hash: storage.MessageHash(owner, ns, d), Owner: owner, Namespace: ns,
		Timestamp: ts, Expiry: expiry, Data: d,
	}
}

func mustStore(t *testing.T, s storage.Store, ms ...storage.Message) {
	t.Helper()
	for _, m := range ms {
		already, _, err := s.Store(bg, m)
		if err != nil {
			t.Fatalf("store %s: %v", m.Hash, err)
		}
		if already {
			t.Fatalf("store %s: already = true for a new message", m.Hash)
		}
	}
}

func all(t *testing.T, s storage.Store, owner storage.Account, ns storage.Namespace) []storage.Message {
	t.Helper()
	ms, more, err := s.Retrieve(bg, owner, ns, "", 0, 0)
	if err != nil {
		t.Fatalf("retrieve: %v", err)
	}
	if more {
		t.Fatalf("retrieve without limits: more = true")
	}
	return ms
}

func hashes(ms []storage.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Hash
	}
	return out
}

func sorted(hs ...string) []string {
	out := slices.Clone(hs)
	slices.Sort(out)
	return out
}

func sameMsg(t *testing.T, got, want storage.Message) {
	t.Helper()
	if got.Hash != want.Hash || got.Owner != want.Owner || got.Namespace != want.Namespace ||
		got.Timestamp != want.Timestamp || got.Expiry != want.Expiry || !bytes.Equal(got.Data, want.Data) {
		t.Errorf("message = %+v\n want %+v", got, want)
	}
}

func eqStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func eqNSMap(t *testing.T, what string, got, want map[storage.Namespace][]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
		return
	}
	for ns, w := range want {
		eqStrings(t, fmt.Sprintf("%s[%d]", what, ns), got[ns], w)
	}
}

// §5: the message hash the store keys on is the spec's; stored data comes
// back byte for byte under it.
func testHashVectors(t *testing.T, s storage.Store) {
	vs, err := testvectors.Category("message_hash")
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vs {
		var in struct {
			Pubkey    string `json:"pubkey_hex"`
			Namespace int    `json:"namespace"`
			Data      string `json:"data_hex"`
		}
		var want struct{ Hash string }
		if err := json.Unmarshal(v.Inputs, &in); err != nil {
			t.Fatalf("%s: %v", v.ID, err)
		}
		if err := json.Unmarshal(v.Expected, &want); err != nil {
			t.Fatalf("%s: %v", v.ID, err)
		}
		a, err := storage.ParseAccount(in.Pubkey)
		if err != nil {
			t.Fatalf("%s: %v", v.ID, err)
		}
		data, _ := hex.DecodeString(in.Data)
		m := storage.Message{Hash: storage.MessageHash(a, storage.Namespace(in.Namespace), data), Owner: a,
			Namespace: storage.Namespace(in.Namespace), Timestamp: int64(1e12 + i), Expiry: int64(2e12 + i), Data: data}
		if m.Hash != want.Hash {
			t.Fatalf("%s: hash %s, want %s", v.ID, m.Hash, want.Hash)
		}
		mustStore(t, s, m)
		got, err := s.GetExpiries(bg, a, []string{want.Hash})
		if err != nil || got[want.Hash] != m.Expiry {
			t.Errorf("%s: GetExpiries = %v, %v", v.ID, got, err)
		}
		ms := all(t, s, a, m.Namespace)
		i := slices.IndexFunc(ms, func(x storage.Message) bool { return x.Hash == want.Hash })
		if i < 0 {
			t.Fatalf("%s: retrieve did not return %s", v.ID, want.Hash)
		}
		sameMsg(t, ms[i], m)
	}
}

// §4.1: a store of an existing hash reports already, raises a later expiry
// and never lowers it.
func testDedupe(t *testing.T, s storage.Store) {
	a := Account(1)
	m := Msg(a, 0, "hello", 1_000_000, 5_000_000)
	steps := []struct {
		expiry      int64
		wantAlready bool
		wantExpiry  int64
	}{
		{5_000_000, false, 5_000_000},
		{4_000_000, true, 5_000_000},
		{9_000_000, true, 9_000_000},
		{9_000_000, true, 9_000_000},
	}
	for i, st := range steps {
		m.Expiry = st.expiry
		already, exp, err := s.Store(bg, m)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if already != st.wantAlready || exp != st.wantExpiry {
			t.Errorf("step %d: already=%v expiry=%d, want %v %d", i, already, exp, st.wantAlready, st.wantExpiry)
		}
	}
	ms := all(t, s, a, 0)
	if len(ms) != 1 || ms[0].Expiry != 9_000_000 || ms[0].Timestamp != 1_000_000 {
		t.Errorf("after dedupe: %+v", ms)
	}
	if st := s.Stats(); st.Messages != 1 || st.Stores != 1 {
		t.Errorf("stats after dedupe: messages %d stores %d, want 1 1", st.Messages, st.Stores)
	}
}

// §2.2: a public outbox (ns < 0, -ns % 20 == 1) holds one message per owner.
func testPublicOutbox(t *testing.T, s storage.Store) {
	a, b := Account(1), Account(2)
	for _, ns := range []storage.Namespace{-1, -21, -41} {
		if !ns.PublicOutbox() {
			t.Fatalf("%d should be a public outbox", ns)
		}
		old := Msg(a, ns, "old", 1000, 9000)
		other := Msg(b, ns, "other owner", 1000, 9000)
		mustStore(t, s, old, other, Msg(a, ns+1, "neighbour ns", 1000, 9000))
		newer := Msg(a, ns, "new", 2000, 9000)
		mustStore(t, s, newer)
		eqStrings(t, fmt.Sprintf("ns %d owner a", ns), hashes(all(t, s, a, ns)), []string{newer.Hash})
		eqStrings(t, fmt.Sprintf("ns %d owner b", ns), hashes(all(t, s, b, ns)), []string{other.Hash})
		if n := len(all(t, s, a, ns+1)); n != 1 {
			t.Errorf("ns %d: neighbour namespace has %d messages, want 1", ns+1, n)
		}
	}
	// Not outboxes: -2, -20, 1, -10 keep everything.
	c := Account(3)
	for _, ns := range []storage.Namespace{-2, -20, 1, -10} {
		mustStore(t, s, Msg(c, ns, "x", 1, 9000), Msg(c, ns, "y", 2, 9000))
		if n := len(all(t, s, c, ns)); n != 2 {
			t.Errorf("ns %d: %d messages, want 2", ns, n)
		}
	}
}

func testStoreBatch(t *testing.T, s storage.Store) {
	a := Account(1)
	existing := Msg(a, 0, "existing", 1000, 5000)
	mustStore(t, s, existing)
	bumped := existing
	bumped.Expiry = 99999
	batch := []storage.Message{
		Msg(a, 0, "one", 1001, 5000),
		bumped, // duplicate of a stored message: ignored entirely
		Msg(a, 0, "two", 1002, 5000),
		Msg(a, 0, "one", 1001, 5000), // duplicate inside the batch
		Msg(a, 3, "three", 1003, 5000),
	}
	n, err := s.StoreBatch(bg, batch)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("inserted = %d, want 3", n)
	}
	eqStrings(t, "ns 0", hashes(all(t, s, a, 0)), []string{existing.Hash, batch[0].Hash, batch[2].Hash})
	eqStrings(t, "ns 3", hashes(all(t, s, a, 3)), []string{batch[4].Hash})
	ex, _ := s.GetExpiries(bg, a, []string{existing.Hash})
	if ex[existing.Hash] != 5000 {
		t.Errorf("batch changed an existing expiry to %d", ex[existing.Hash])
	}
	if n, err := s.StoreBatch(bg, nil); err != nil || n != 0 {
		t.Errorf("empty batch: %d, %v", n, err)
	}
	// Public outbox: the later timestamp wins, whatever the arrival order.
	cur := Msg(a, -1, "current", 5000, 9000)
	mustStore(t, s, cur)
	n, err = s.StoreBatch(bg, []storage.Message{Msg(a, -1, "stale", 4000, 9000)})
	if err != nil || n != 0 {
		t.Errorf("stale outbox batch: %d, %v; want 0", n, err)
	}
	fresh := Msg(a, -1, "fresh", 6000, 9000)
	n, err = s.StoreBatch(bg, []storage.Message{fresh})
	if err != nil || n != 1 {
		t.Errorf("fresh outbox batch: %d, %v; want 1", n, err)
	}
	eqStrings(t, "outbox", hashes(all(t, s, a, -1)), []string{fresh.Hash})
}

// fill stores n messages of owner in ns whose hashes are not in insertion
// order, interleaved with messages of other owners and namespaces.
func fill(t *testing.T, s storage.Store, owner storage.Account, ns storage.Namespace, n, dataLen int) []storage.Message {
	t.Helper()
	var out []storage.Message
	for i := 0; i < n; i++ {
		data := fmt.Sprintf("%s-%d-", owner.Hex()[:8], i)
		data += string(bytes.Repeat([]byte{'x'}, max(0, dataLen-len(data))))
		m := Msg(owner, ns, data, int64(1_000_000+i), int64(9_000_000+i))
		mustStore(t, s, m)
		mustStore(t, s, Msg(Account(99), ns, data, 1, 9_000_000), Msg(owner, ns+7, data, 1, 9_000_000))
		out = append(out, m)
	}
	if slices.IsSorted(hashes(out)) {
		t.Fatal("test data hashes happen to be sorted; insertion order would be untested")
	}
	return out
}

// §4.2: a retrieve returns the (account, namespace) messages in insertion order.
func testRetrieveOrder(t *testing.T, s storage.Store) {
	a := Account(1)
	want := fill(t, s, a, 5, 12, 10)
	got := all(t, s, a, 5)
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		sameMsg(t, got[i], want[i])
	}
	if ms := all(t, s, Account(2), 5); len(ms) != 0 {
		t.Errorf("unknown account: %d messages", len(ms))
	}
}

// §4.2: last_hash continues after that message when it belongs to the same
// account and namespace; otherwise retrieval starts from the beginning.
func testRetrieveLastHash(t *testing.T, s storage.Store) {
	a := Account(1)
	ms := fill(t, s, a, 0, 8, 10)
	foreignOwner := Msg(Account(99), 0, "f", 1, 9_000_000)
	otherNS := Msg(a, 3, "ns3", 1, 9_000_000)
	mustStore(t, s, foreignOwner, otherNS)
	cases := []struct {
		name, last string
		want       []storage.Message
	}{
		{"empty", "", ms},
		{"first", ms[0].Hash, ms[1:]},
		{"middle", ms[3].Hash, ms[4:]},
		{"last", ms[7].Hash, nil},
		{"unknown", storage.MessageHash(a, 0, []byte("never stored")), ms},
		{"other account", foreignOwner.Hash, ms},
		{"other namespace", otherNS.Hash, ms},
	}
	for _, c := range cases {
		got, more, err := s.Retrieve(bg, a, 0, c.last, 0, 0)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		eqStrings(t, c.name, hashes(got), hashes(c.want))
		if more {
			t.Errorf("%s: more = true", c.name)
		}
	}
	// Paging with last_hash walks everything exactly once.
	var paged []string
	last := ""
	for range 10 {
		got, more, err := s.Retrieve(bg, a, 0, last, 3, 0)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, hashes(got)...)
		if !more {
			break
		}
		last = got[len(got)-1].Hash
	}
	eqStrings(t, "paged", paged, hashes(ms))
}

func testRetrieveMaxCount(t *testing.T, s storage.Store) {
	a := Account(1)
	ms := fill(t, s, a, 0, 6, 10)
	cases := []struct {
		count    int
		want     int
		wantMore bool
	}{{0, 6, false}, {1, 1, true}, {5, 5, true}, {6, 6, false}, {100, 6, false}}
	for _, c := range cases {
		got, more, err := s.Retrieve(bg, a, 0, "", c.count, 0)
		if err != nil {
			t.Fatal(err)
		}
		eqStrings(t, "maxCount "+strconv.Itoa(c.count), hashes(got), hashes(ms[:c.want]))
		if more != c.wantMore {
			t.Errorf("maxCount %d: more = %v, want %v", c.count, more, c.wantMore)
		}
	}
}

// §4.2: each message counts 100 + len(hash) + floor(len(data)*4/3); the
// retrieve stops before the message that would exceed max_size, but always
// returns at least one.
func testRetrieveSize(t *testing.T, s storage.Store) {
	a := Account(1)
	ms := fill(t, s, a, 0, 5, 301) // 100 + 43 + 401 = 544 each
	const each = 100 + 43 + 301*4/3
	cases := []struct {
		name     string
		maxSize  int64
		maxCount int
		want     int
		more     bool
	}{
		{"exactly three", 3 * each, 0, 3, true},
		{"one byte short of three", 3*each - 1, 0, 2, true},
		{"tiny still returns one", 1, 0, 1, true},
		{"everything fits", 5 * each, 0, 5, false},
		{"no size limit", 0, 0, 5, false},
		{"count binds first", 5 * each, 2, 2, true},
		{"size binds first", 2 * each, 4, 2, true},
	}
	for _, c := range cases {
		got, more, err := s.Retrieve(bg, a, 0, "", c.maxCount, c.maxSize)
		if err != nil {
			t.Fatal(err)
		}
		eqStrings(t, c.name, hashes(got), hashes(ms[:c.want]))
		if more != c.more {
			t.Errorf("%s: more = %v, want %v", c.name, more, c.more)
		}
	}
	got, more, err := s.Retrieve(bg, a, 0, ms[3].Hash, 0, 1)
	if err != nil || len(got) != 1 || got[0].Hash != ms[4].Hash || more {
		t.Errorf("last page with tiny size: %v more=%v err=%v", hashes(got), more, err)
	}
}

func testRetrieveCopies(t *testing.T, s storage.Store) {
	a := Account(1)
	m := Msg(a, 0, "immutable", 1, 9000)
	mustStore(t, s, m)
	got := all(t, s, a, 0)
	got[0].Data[0] = 'X'
	if again := all(t, s, a, 0); string(again[0].Data) != "immutable" {
		t.Errorf("mutating returned data changed the store: %q", again[0].Data)
	}
}

// §4.3: delete removes only the account's own messages, in any namespace,
// and reports the deleted hashes sorted.
func testDelete(t *testing.T, s storage.Store) {
	a, b := Account(1), Account(2)
	m0, m1, m2 := Msg(a, 0, "a0", 1, 9000), Msg(a, 13, "a13", 1, 9000), Msg(a, -10, "a-10", 1, 9000)
	keep := Msg(a, 0, "keep", 1, 9000)
	foreign := Msg(b, 0, "b0", 1, 9000)
	mustStore(t, s, m0, m1, m2, keep, foreign)
	unknown := storage.MessageHash(a, 0, []byte("nope"))
	got, err := s.Delete(bg, a, []string{m2.Hash, foreign.Hash, unknown, m0.Hash, m1.Hash})
	if err != nil {
		t.Fatal(err)
	}
	eqStrings(t, "deleted", got, sorted(m0.Hash, m1.Hash, m2.Hash))
	eqStrings(t, "a ns0 left", hashes(all(t, s, a, 0)), []string{keep.Hash})
	eqStrings(t, "b ns0 left", hashes(all(t, s, b, 0)), []string{foreign.Hash})
	if n := len(all(t, s, a, 13)) + len(all(t, s, a, -10)); n != 0 {
		t.Errorf("%d messages left in deleted namespaces", n)
	}
	got, err = s.Delete(bg, a, []string{m0.Hash})
	if err != nil || len(got) != 0 {
		t.Errorf("second delete: %v, %v; want nothing", got, err)
	}
	if st := s.Stats(); st.Messages != 2 {
		t.Errorf("stats messages = %d, want 2", st.Messages)
	}
}

type nsFixture struct {
	a, b storage.Account
	byNS map[storage.Namespace][]storage.Message // owner a's messages
}

func nsFill(t *testing.T, s storage.Store) nsFixture {
	f := nsFixture{a: Account(1), b: Account(2), byNS: map[storage.Namespace][]storage.Message{}}
	for _, ns := range []storage.Namespace{0, 3, -10} {
		for i := range 3 {
			m := Msg(f.a, ns, fmt.Sprintf("m%d-%d", ns, i), int64(1000+i*1000), int64(100_000+i))
			mustStore(t, s, m)
			f.byNS[ns] = append(f.byNS[ns], m)
			mustStore(t, s, Msg(f.b, ns, fmt.Sprintf("m%d-%d", ns, i), 1000, 100_000))
		}
	}
	return f
}

func sortedHashes(ms ...storage.Message) []string { return sorted(hashes(ms)...) }

// §4.4
func testDeleteAll(t *testing.T, s storage.Store) {
	f := nsFill(t, s)
	got, err := s.DeleteAll(bg, f.a, storage.NSFilter{NS: 3})
	if err != nil {
		t.Fatal(err)
	}
	eqNSMap(t, "delete_all ns 3", got, map[storage.Namespace][]string{3: sortedHashes(f.byNS[3]...)})
	if len(all(t, s, f.a, 0)) != 3 || len(all(t, s, f.a, -10)) != 3 || len(all(t, s, f.b, 3)) != 3 {
		t.Error("delete_all of one namespace touched another namespace or account")
	}
	got, err = s.DeleteAll(bg, f.a, storage.NSFilter{NS: 3})
	if err != nil || len(got) != 0 {
		t.Errorf("repeat delete_all: %v, %v", got, err)
	}
	got, err = s.DeleteAll(bg, f.a, storage.NSFilter{All: storage.AllNamespaces})
	if err != nil {
		t.Fatal(err)
	}
	eqNSMap(t, "delete_all all", got, map[storage.Namespace][]string{
		0: sortedHashes(f.byNS[0]...), -10: sortedHashes(f.byNS[-10]...)})
	if st := s.Stats(); st.Messages != 9 || st.Accounts != 1 {
		t.Errorf("stats after delete_all: messages %d accounts %d, want 9 1", st.Messages, st.Accounts)
	}
}

// §4.5: delete_before removes timestamp <= before.
func testDeleteBefore(t *testing.T, s storage.Store) {
	f := nsFill(t, s) // timestamps 1000, 2000, 3000 per namespace
	got, err := s.DeleteBefore(bg, f.a, storage.NSFilter{NS: 0}, 2000)
	if err != nil {
		t.Fatal(err)
	}
	eqNSMap(t, "ns 0 before 2000", got, map[storage.Namespace][]string{0: sortedHashes(f.byNS[0][:2]...)})
	eqStrings(t, "ns 0 left", hashes(all(t, s, f.a, 0)), hashes(f.byNS[0][2:]))
	got, err = s.DeleteBefore(bg, f.a, storage.NSFilter{All: true}, 1999)
	if err != nil {
		t.Fatal(err)
	}
	eqNSMap(t, "all before 1999", got, map[storage.Namespace][]string{
		3: {f.byNS[3][0].Hash}, -10: {f.byNS[-10][0].Hash}})
	if n := len(all(t, s, f.b, 0)); n != 3 {
		t.Errorf("other account lost messages: %d left", n)
	}
}

// §4.6: expire_all only shortens.
func testExpireAll(t *testing.T, s storage.Store) {
	f := nsFill(t, s) // expiries 100000, 100001, 100002
	got, err := s.ExpireAll(bg, f.a, storage.NSFilter{NS: 3}, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	eqNSMap(t, "ns 3", got, map[storage.Namespace][]string{3: sortedHashes(f.byNS[3][1:]...)})
	ex, _ := s.GetExpiries(bg, f.a, hashes(f.byNS[3]))
	for _, m := range f.byNS[3] {
		if ex[m.Hash] != 100_000 {
			t.Errorf("expiry of %s = %d, want 100000", m.Hash, ex[m.Hash])
		}
	}
	got, err = s.ExpireAll(bg, f.a, storage.NSFilter{All: true}, 100_001)
	if err != nil {
		t.Fatal(err)
	}
	eqNSMap(t, "all", got, map[storage.Namespace][]string{0: {f.byNS[0][2].Hash}, -10: {f.byNS[-10][2].Hash}})
	got, err = s.ExpireAll(bg, f.a, storage.NSFilter{All: true}, 500_000)
	if err != nil || len(got) != 0 {
		t.Errorf("expire_all to a later time changed %v (%v)", got, err)
	}
	ex, _ = s.GetExpiries(bg, f.b, hashes(all(t, s, f.b, 3)))
	for h, e := range ex {
		if e != 100_000 {
			t.Errorf("other account's %s expiry = %d", h, e)
		}
	}
}

// §4.7 storage effect: set, shorten-only, extend-only.
func testUpdateExpiry(t *testing.T, s storage.Store) {
	a := Account(1)
	m1, m2 := Msg(a, 0, "m1", 1, 50_000), Msg(a, 11, "m2", 1, 50_000)
	foreign := Msg(Account(2), 0, "f", 1, 50_000)
	mustStore(t, s, m1, m2, foreign)
	unknown := storage.MessageHash(a, 0, []byte("unknown"))
	type upd = storage.ExpiryUpdate
	u := func(h string, e int64, changed bool) upd { return upd{Hash: h, Expiry: e, Changed: changed} }
	sortUpd := func(us ...upd) []upd {
		sort.Slice(us, func(i, j int) bool { return us[i].Hash < us[j].Hash })
		return us
	}
	steps := []struct {
		name     string
		hashes   []string
		expiries []int64
		mode     storage.ExpiryMode
		want     []upd
	}{
		{"set lower", []string{m1.Hash, unknown, foreign.Hash}, []int64{40_000, 1, 1}, storage.ExpirySet,
			[]upd{u(m1.Hash, 40_000, true)}},
		{"set higher", []string{m1.Hash}, []int64{60_000}, storage.ExpirySet, []upd{u(m1.Hash, 60_000, true)}},
		{"set same", []string{m1.Hash}, []int64{60_000}, storage.ExpirySet, []upd{u(m1.Hash, 60_000, false)}},
		{"shorten", []string{m1.Hash, m2.Hash}, []int64{70_000, 30_000}, storage.ExpiryShorten,
			sortUpd(u(m1.Hash, 60_000, false), u(m2.Hash, 30_000, true))},
		{"extend", []string{m2.Hash, m1.Hash}, []int64{20_000, 80_000}, storage.ExpiryExtend,
			sortUpd(u(m1.Hash, 80_000, true), u(m2.Hash, 30_000, false))},
	}
	for _, st := range steps {
		got, err := s.UpdateExpiry(bg, a, st.hashes, st.expiries, st.mode)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if !slices.Equal(got, st.want) {
			t.Errorf("%s: %+v, want %+v", st.name, got, st.want)
		}
	}
	ex, _ := s.GetExpiries(bg, Account(2), []string{foreign.Hash})
	if ex[foreign.Hash] != 50_000 {
		t.Errorf("another account's expiry changed to %d", ex[foreign.Hash])
	}
	if _, err := s.UpdateExpiry(bg, a, []string{m1.Hash}, []int64{1, 2}, storage.ExpirySet); err == nil {
		t.Error("mismatched hashes/expiries accepted")
	}
}

// §4.8: only the account's existing messages are reported.
func testGetExpiries(t *testing.T, s storage.Store) {
	a := Account(1)
	m1, m2 := Msg(a, 0, "m1", 1, 11_000), Msg(a, 2, "m2", 1, 22_000)
	foreign := Msg(Account(2), 0, "f", 1, 33_000)
	mustStore(t, s, m1, m2, foreign)
	got, err := s.GetExpiries(bg, a, []string{m1.Hash, m2.Hash, foreign.Hash, storage.MessageHash(a, 0, []byte("?"))})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{m1.Hash: 11_000, m2.Hash: 22_000}
	if !maps.Equal(got, want) {
		t.Errorf("GetExpiries = %v, want %v", got, want)
	}
}

func token(i int) []byte {
	t := make([]byte, 36)
	t[0], t[1] = 0x03, 0x07
	binary.BigEndian.PutUint32(t[32:], uint32(i))
	return t
}

func tokenSet(ts [][]byte) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = hex.EncodeToString(t)
	}
	slices.Sort(out)
	return out
}

func tokensSet(ids ...int) []string {
	var ts [][]byte
	for _, i := range ids {
		ts = append(ts, token(i))
	}
	return tokenSet(ts)
}

// §4.9 / §4.10
func testRevocations(t *testing.T, s storage.Store) {
	a, b := Account(1), Account(2)
	if err := s.Revoke(bg, a, [][]byte{token(1), token(2), token(3)}, 1000); err != nil {
		t.Fatal(err)
	}
	got, err := s.Revoked(bg, a)
	if err != nil {
		t.Fatal(err)
	}
	eqStrings(t, "revoked", tokenSet(got), tokensSet(1, 2, 3))
	// Revoking again refreshes the entry; it is not listed twice.
	if err := s.Revoke(bg, a, [][]byte{token(1), token(1)}, 1001); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Revoked(bg, a)
	eqStrings(t, "revoked after re-revoke", tokenSet(got), tokensSet(1, 2, 3))
	if other, _ := s.Revoked(bg, b); len(other) != 0 {
		t.Errorf("another account has revocations: %x", other)
	}
	for _, c := range []struct {
		who  storage.Account
		tok  int
		want bool
	}{{a, 1, true}, {a, 3, true}, {a, 4, false}, {b, 1, false}} {
		if r, err := s.IsRevoked(bg, c.who, token(c.tok)); err != nil || r != c.want {
			t.Errorf("IsRevoked(%s, %d) = %v, %v; want %v", c.who.Hex()[:6], c.tok, r, err, c.want)
		}
	}
	n, err := s.Unrevoke(bg, a, [][]byte{token(2), token(9)})
	if err != nil || n != 1 {
		t.Errorf("unrevoke = %d, %v; want 1", n, err)
	}
	got, _ = s.Revoked(bg, a)
	eqStrings(t, "after unrevoke", tokenSet(got), tokensSet(1, 3))
	if r, _ := s.IsRevoked(bg, a, token(2)); r {
		t.Error("unrevoked token still revoked")
	}
	if n, _ := s.Unrevoke(bg, b, [][]byte{token(1)}); n != 0 {
		t.Errorf("unrevoke on another account counted %d", n)
	}
}

// §4.9: at most 50 per account, oldest dropped, a re-revoke refreshes.
func testRevocationCap(t *testing.T, s storage.Store) {
	a := Account(1)
	for i := range 50 {
		if err := s.Revoke(bg, a, [][]byte{token(i)}, int64(1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	// Refresh token 0, then two new ones push out the two oldest others (1, 2).
	if err := s.Revoke(bg, a, [][]byte{token(0)}, 2000); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(bg, a, [][]byte{token(100), token(101)}, 2001); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Revoked(bg, a)
	var want []int
	for i := 0; i < 50; i++ {
		if i != 1 && i != 2 {
			want = append(want, i)
		}
	}
	want = append(want, 100, 101)
	eqStrings(t, "revoked after cap", tokenSet(got), tokensSet(want...))
	// One request of 55 keeps the last 50 of the request.
	b := Account(2)
	var many [][]byte
	for i := range 55 {
		many = append(many, token(500+i))
	}
	if err := s.Revoke(bg, b, many, 3000); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Revoked(bg, b)
	eqStrings(t, "one big revoke", tokenSet(got), tokenSet(many[5:]))
}

// §5/§12: pruning removes expiry <= now.
func testPrune(t *testing.T, s storage.Store) {
	a := Account(1)
	gone1, gone2 := Msg(a, 0, "g1", 1, 999), Msg(a, 5, "g2", 1, 1000)
	kept := Msg(a, 0, "k", 1, 1001)
	mustStore(t, s, gone1, gone2, kept, Msg(Account(2), 0, "g3", 1, 10))
	n, err := s.Prune(bg, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("pruned %d, want 3", n)
	}
	eqStrings(t, "left", hashes(all(t, s, a, 0)), []string{kept.Hash})
	if len(all(t, s, a, 5)) != 0 {
		t.Error("expired ns 5 message survived")
	}
	st := s.Stats()
	if st.Pruned != 3 || st.LastPrune == 0 || st.Messages != 1 || st.Accounts != 1 {
		t.Errorf("stats after prune: %+v", st)
	}
	if n, err := s.Prune(bg, 1000); err != nil || n != 0 {
		t.Errorf("second prune: %d, %v", n, err)
	}
}

type ringFixture struct {
	byPos map[uint64][]string // position → hashes stored there
}

var ringPositions = []uint64{0, 1, 100, 1 << 63, 1<<64 - 1}

func ringFill(t *testing.T, s storage.Store) ringFixture {
	f := ringFixture{byPos: map[uint64][]string{}}
	for i, pos := range ringPositions {
		for salt := range 2 {
			a := AccountAt(pos, byte(salt))
			if storage.Position(a.Key) != pos {
				t.Fatalf("AccountAt(%d) has position %d", pos, storage.Position(a.Key))
			}
			for j, ns := range []storage.Namespace{0, -1, 42} {
				m := Msg(a, ns, fmt.Sprintf("r%d-%d-%d", i, salt, j), 1, 9000)
				mustStore(t, s, m)
				f.byPos[pos] = append(f.byPos[pos], m.Hash)
			}
		}
	}
	return f
}

func (f ringFixture) want(positions ...uint64) []string {
	var out []string
	for _, p := range positions {
		out = append(out, f.byPos[p]...)
	}
	return sorted(out...)
}

var ringCases = []struct {
	name         string
	lower, upper uint64
	positions    []uint64
}{
	{"low arc", 0, 100, []uint64{1, 100}},
	{"lower is exclusive", 1, 100, []uint64{100}},
	{"top half", 1<<63 - 1, 1<<64 - 1, []uint64{1 << 63, 1<<64 - 1}},
	{"wraps past zero", 100, 0, []uint64{1 << 63, 1<<64 - 1, 0}},
	{"wraps to one", 1<<64 - 1, 1, []uint64{0, 1}},
	{"empty arc", 2, 99, nil},
	{"equal bounds = whole ring", 7, 7, ringPositions},
	{"zero bounds = whole ring", 0, 0, ringPositions},
}

// §6.1/§6.6: range walks by owner swarm position on the u64 ring.
func testForEach(t *testing.T, s storage.Store) {
	f := ringFill(t, s)
	for _, c := range ringCases {
		var got []string
		err := s.ForEach(bg, c.lower, c.upper, func(m storage.Message) error {
			if !storage.InRange(storage.Position(m.Owner.Key), c.lower, c.upper) {
				t.Errorf("%s: message at position %d", c.name, storage.Position(m.Owner.Key))
			}
			if len(m.Data) == 0 || m.Expiry != 9000 {
				t.Errorf("%s: incomplete message %+v", c.name, m)
			}
			got = append(got, m.Hash)
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(got) != len(slices.Compact(sorted(got...))) {
			t.Errorf("%s: a message was visited twice", c.name)
		}
		eqStrings(t, c.name, sorted(got...), f.want(c.positions...))
	}
}

func testForEachStop(t *testing.T, s storage.Store) {
	ringFill(t, s)
	stop := errors.New("stop here")
	calls := 0
	err := s.ForEach(bg, 0, 0, func(m storage.Message) error {
		calls++
		// The walk holds no write lock: the callback may write to the store.
		if _, _, err := s.Store(bg, Msg(Account(77), 0, "during walk", 1, 9000)); err != nil {
			t.Errorf("store during ForEach: %v", err)
		}
		return stop
	})
	if !errors.Is(err, stop) {
		t.Errorf("ForEach error = %v, want the callback's", err)
	}
	if calls != 1 {
		t.Errorf("callback ran %d times after returning an error", calls)
	}
}

func testDropRange(t *testing.T, s storage.Store) {
	for _, c := range ringCases {
		t.Run(c.name, func(t *testing.T) {
			// Each case starts from the full fixture: drop whatever is left first.
			if _, err := s.DropRange(bg, 0, 0); err != nil {
				t.Fatal(err)
			}
			f := ringFill(t, s)
			n, err := s.DropRange(bg, c.lower, c.upper)
			if err != nil {
				t.Fatal(err)
			}
			dropped := f.want(c.positions...)
			if n != len(dropped) {
				t.Errorf("dropped %d, want %d", n, len(dropped))
			}
			var left []string
			s.ForEach(bg, 0, 0, func(m storage.Message) error { left = append(left, m.Hash); return nil })
			var wantLeft []string
			for _, p := range ringPositions {
				if !slices.Contains(c.positions, p) {
					wantLeft = append(wantLeft, f.byPos[p]...)
				}
			}
			eqStrings(t, "left", sorted(left...), sorted(wantLeft...))
			if st := s.Stats(); st.Messages != int64(len(wantLeft)) {
				t.Errorf("stats messages = %d, want %d", st.Messages, len(wantLeft))
			}
		})
	}
}

func testStats(t *testing.T, s storage.Store) {
	if st := s.Stats(); st.Messages != 0 || st.Accounts != 0 || st.Stores != 0 {
		t.Errorf("empty store stats: %+v", st)
	}
	for i := range 4 {
		for j := range 3 {
			mustStore(t, s, Msg(Account(i), storage.Namespace(j), "s", 1, 9000))
		}
	}
	s.Store(bg, Msg(Account(0), 0, "s", 1, 9000)) // duplicate: not a store
	st := s.Stats()
	if st.Messages != 12 || st.Accounts != 4 || st.Stores != 12 {
		t.Errorf("stats: messages %d accounts %d stores %d, want 12 4 12", st.Messages, st.Accounts, st.Stores)
	}
	if _, err := s.DeleteAll(bg, Account(3), storage.NSFilter{All: true}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Messages != 9 || st.Accounts != 3 {
		t.Errorf("after delete_all: messages %d accounts %d, want 9 3", st.Messages, st.Accounts)
	}
}

func testConcurrent(t *testing.T, s storage.Store) {
	const writers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Half the writers repeat the other half's messages.
				m := Msg(Account(w%8), 0, fmt.Sprintf("c%d", i), 1, 9000)
				if _, _, err := s.Store(bg, m); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := s.Stats()
	if st.Messages != 8*each || st.Stores != 8*each {
		t.Errorf("messages %d stores %d, want %d", st.Messages, st.Stores, 8*each)
	}
	for w := range 8 {
		if n := len(all(t, s, Account(w), 0)); n != each {
			t.Errorf("account %d has %d messages, want %d", w, n, each)
		}
	}
}

func testCanceled(t *testing.T, s storage.Store) {
	ctx, cancel := context.WithCancel(bg)
	cancel()
	m := Msg(Account(1), 0, "canceled", 1, 9000)
	if _, _, err := s.Store(ctx, m); err == nil {
		t.Error("store with a canceled context succeeded")
	}
	if len(all(t, s, Account(1), 0)) != 0 {
		t.Error("a store refused for a canceled context was kept")
	}
}

func testClose(t *testing.T, s storage.Store) {
	a := Account(1)
	mustStore(t, s, Msg(a, 0, "before close", 1, 9000))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	_, _, checks["Store"] = s.Store(bg, Msg(a, 0, "after", 1, 9000))
	_, checks["StoreBatch"] = s.StoreBatch(bg, []storage.Message{Msg(a, 0, "after", 1, 9000)})
	_, _, checks["Retrieve"] = s.Retrieve(bg, a, 0, "", 0, 0)
	_, checks["Delete"] = s.Delete(bg, a, []string{"x"})
	_, checks["DeleteAll"] = s.DeleteAll(bg, a, storage.NSFilter{All: true})
	_, checks["Prune"] = s.Prune(bg, 1)
	_, checks["GetExpiries"] = s.GetExpiries(bg, a, []string{"x"})
	checks["Revoke"] = s.Revoke(bg, a, [][]byte{token(1)}, 1)
	checks["ForEach"] = s.ForEach(bg, 0, 0, func(storage.Message) error { return nil })
	for name, err := range checks {
		if !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// FullOpener opens an empty store capped at capBytes.
type FullOpener func(t *testing.T, capBytes int64) storage.Store

// RunFull checks the size cap: stores fail with storage.ErrFull (StoreBatch
// too) while reads and deletes keep working, and deleting makes room again.
func RunFull(t *testing.T, open FullOpener) {
	const capBytes = 1 << 20
	s := open(t, capBytes)
	defer s.Close()
	a := Account(1)
	data := string(bytes.Repeat([]byte("z"), 4000))
	var stored []storage.Message
	var fullErr error
	for i := range 10_000 {
		m := Msg(a, 0, fmt.Sprintf("%d:%s", i, data), 1, 9000)
		if _, _, err := s.Store(bg, m); err != nil {
			fullErr = err
			break
		}
		stored = append(stored, m)
	}
	if !errors.Is(fullErr, storage.ErrFull) {
		t.Fatalf("after %d stores of 4 KB under a 1 MiB cap: err = %v, want ErrFull", len(stored), fullErr)
	}
	if len(stored) < 50 {
		// Fatal: the checks below pick stored messages out by index.
		t.Fatalf("only %d 4 KB messages fit in 1 MiB", len(stored))
	}
	if st := s.Stats(); st.CapBytes != capBytes || st.Messages != int64(len(stored)) {
		t.Errorf("stats when full: %+v", st)
	}
	if _, err := s.StoreBatch(bg, []storage.Message{Msg(a, 0, "batch:"+data, 1, 9000)}); !errors.Is(err, storage.ErrFull) {
		t.Errorf("StoreBatch when full: %v, want ErrFull", err)
	}
	// A duplicate needs no room: it still answers already.
	if already, _, err := s.Store(bg, stored[0]); err != nil || !already {
		t.Errorf("duplicate store when full: already=%v err=%v", already, err)
	}
	got, _, err := s.Retrieve(bg, a, 0, "", 5, 0)
	if err != nil || len(got) != 5 {
		t.Errorf("retrieve when full: %d messages, %v", len(got), err)
	}
	del, err := s.Delete(bg, a, hashes(stored[:len(stored)/2]))
	if err != nil || len(del) != len(stored)/2 {
		t.Fatalf("delete when full: %d deleted, %v", len(del), err)
	}
	if _, err := s.Prune(bg, 1); err != nil {
		t.Errorf("prune when full: %v", err)
	}
	if _, _, err := s.Store(bg, Msg(a, 0, "room again:"+data, 1, 9000)); err != nil {
		t.Errorf("store after deleting half: %v", err)
	}
}
