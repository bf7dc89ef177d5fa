package msgstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/snodebox/snodebox/storage"
)

// settle checkpoints the open transaction: a delete is committed at once.
func settle(t *testing.T, s *Store) {
	t.Helper()
	if _, err := s.Delete(bg, crashMsg(9, 0).Owner, []string{crashMsg(9, 0).Hash}); err != nil {
		t.Fatal(err)
	}
}

// mergeAll moves the whole tail into the index in one commit, as Close
// does, once the commit loop has no transaction open.
func mergeAll(t *testing.T, s *Store) {
	t.Helper()
	settle(t, s)
	mergeNow(t, s)
}

// mergeNow is mergeAll for a commit loop known to be idle.
func mergeNow(t *testing.T, s *Store) {
	t.Helper()
	if err := s.mergeWholeTail(); err != nil {
		t.Fatal(err)
	}
}

func indexEntries(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bktHash).Stats().KeyN
		return nil
	})
	return n
}

// findable checks every way a message is found by its hash: a second
// store of it is a duplicate, get_expiries sees it, and a retrieve after
// it starts behind it.
func findable(t *testing.T, s *Store, ms []storage.Message) {
	t.Helper()
	for i, m := range ms {
		already, _, err := s.Store(bg, m)
		if err != nil || !already {
			t.Fatalf("message %d stored again: already=%v err=%v", i, already, err)
		}
		exp, err := s.GetExpiries(bg, m.Owner, []string{m.Hash})
		if err != nil || exp[m.Hash] != m.Expiry {
			t.Fatalf("message %d: get_expiries %v %v", i, exp, err)
		}
		after, _, err := s.Retrieve(bg, m.Owner, m.Namespace, m.Hash, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range after {
			if a.Hash == m.Hash {
				t.Fatalf("message %d: retrieve after it returned it: its hash was not found", i)
			}
		}
	}
}

// A message is found by its hash while its entry waits in the tail, after
// a power cut (the tail is rebuilt from the records past the marks), and
// after its slice is merged into the index; Close leaves the index whole.
func TestHashTailFindsMessagesBeforeAndAfterTheirMerge(t *testing.T) {
	// No timed checkpoints: the tail changes only when the test says.
	s := openTemp(t, Options{noCheckpoints: true})
	var ms []storage.Message
	for i := range 300 {
		m := crashMsg(i%5, i)
		ms = append(ms, m)
		if already, _, err := s.Store(bg, m); err != nil || already {
			t.Fatalf("store %d: already=%v err=%v", i, already, err)
		}
	}
	settle(t, s)
	if n := s.tail.size(); n < 290 {
		t.Fatalf("tail holds %d entries after one checkpoint, want most of 300", n)
	}
	findable(t, s, ms)

	cut, err := open(powerCut(t, s), Options{noCheckpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := cut.tail.size(); n != s.tail.size() {
		t.Errorf("after a power cut the tail holds %d entries, before it %d", n, s.tail.size())
	}
	findable(t, cut, ms)
	cut.Close()

	mergeAll(t, s)
	if n := s.tail.size(); n != 0 {
		t.Errorf("tail holds %d entries after merging all", n)
	}
	// Merged entries stay readable until the next merge.
	mergeAll(t, s)
	if got := indexEntries(t, s); got != len(ms) {
		t.Errorf("index holds %d entries, want %d", got, len(ms))
	}
	findable(t, s, ms)

	path := s.path
	s.Store(bg, crashMsg(7, 1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = open(path, Options{noCheckpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := s.tail.size(); n != 0 {
		t.Errorf("Close left %d entries in the tail", n)
	}
	if got := indexEntries(t, s); got != len(ms)+1 {
		t.Errorf("after Close the index holds %d entries, want %d", got, len(ms)+1)
	}
	findable(t, s, append(ms, crashMsg(7, 1)))
}

// An entry whose message was deleted before its merge matches nothing and
// never reaches the index; the hash can be stored again.
func TestHashTailSkipsDeletedMessages(t *testing.T) {
	s := openTemp(t, Options{})
	defer s.Close()
	gone, kept := crashMsg(1, 1), crashMsg(1, 2)
	for _, m := range []storage.Message{gone, kept} {
		if _, _, err := s.Store(bg, m); err != nil {
			t.Fatal(err)
		}
	}
	if del, err := s.Delete(bg, gone.Owner, []string{gone.Hash}); err != nil || len(del) != 1 {
		t.Fatalf("delete: %v %v", del, err)
	}
	if exp, err := s.GetExpiries(bg, gone.Owner, []string{gone.Hash}); err != nil || len(exp) != 0 {
		t.Fatalf("deleted message still found: %v %v", exp, err)
	}
	mergeAll(t, s)
	if got := indexEntries(t, s); got != 1 {
		t.Errorf("index holds %d entries, want only the kept message's", got)
	}
	if already, _, err := s.Store(bg, gone); err != nil || already {
		t.Errorf("storing the deleted message again: already=%v err=%v", already, err)
	}
	mustHave(t, s, gone)
	mustHave(t, s, kept)
}

// A read transaction that began before merges whose entries have left the
// tail cannot trust a miss: lookup says so, and a fresh read finds it.
func TestHashTailOldSnapshotRetries(t *testing.T) {
	s := openTemp(t, Options{})
	defer s.Close()
	m := crashMsg(2, 3)
	if _, _, err := s.Store(bg, m); err != nil {
		t.Fatal(err)
	}
	settle(t, s)
	old, err := s.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Rollback()
	if _, ok, err := s.lookup(old, m.Hash, false); err != nil || !ok {
		t.Fatalf("before the merge: ok=%v err=%v", ok, err)
	}
	mergeNow(t, s)
	if _, ok, err := s.lookup(old, m.Hash, false); err != nil || !ok {
		t.Fatalf("after one merge the old snapshot still finds it in the tail: ok=%v err=%v", ok, err)
	}
	mergeNow(t, s)
	if _, _, err := s.lookup(old, m.Hash, false); !errors.Is(err, errSnapshotBehind) {
		t.Fatalf("after two merges the old snapshot misses it: err=%v, want errSnapshotBehind", err)
	}
	if exp, err := s.GetExpiries(bg, m.Owner, []string{m.Hash}); err != nil || exp[m.Hash] != m.Expiry {
		t.Fatalf("a fresh read: %v %v", exp, err)
	}
}

// A file written by a build without the tail has a whole index: it opens
// with every mark at its last message and an empty tail.
func TestHashTailMarksStartAtAWholeIndex(t *testing.T) {
	s := openTemp(t, Options{})
	m := crashMsg(3, 4)
	if _, _, err := s.Store(bg, m); err != nil {
		t.Fatal(err)
	}
	path := s.path
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bktMeta).Delete(keyTailMarks) })
	db.Close()
	s, err = open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, mk := range s.tail.marks {
		if mk != 1 {
			t.Fatalf("mark %d is %d, want 1 (the last seq)", i, mk)
		}
	}
	findable(t, s, []storage.Message{m})
}

// A transaction thrown away takes its tail entries with it: the seq a
// failed write used goes to the next store, and the index must never get
// an entry naming that seq under the failed message's hash.
func TestHashTailForgetsAThrownAwayTransaction(t *testing.T) {
	s := openTemp(t, Options{noCheckpoints: true})
	defer s.Close()
	a, b, c := crashMsg(4, 1), crashMsg(4, 2), crashMsg(4, 3)
	if _, _, err := s.Store(bg, a); err != nil {
		t.Fatal(err)
	}
	err := s.write(0, func(tx *bolt.Tx) error {
		if _, err := s.wtx(tx).store(b, encodeRecord(b), true); err != nil {
			return err
		}
		return errors.New("refused after its insert")
	}, nil)
	if err == nil {
		t.Fatal("the failing write reported success")
	}
	if n := s.tail.size(); n != 1 {
		t.Errorf("tail holds %d entries after the thrown-away transaction, want 1", n)
	}
	if _, _, err := s.Store(bg, c); err != nil {
		t.Fatal(err)
	}
	if exp, err := s.GetExpiries(bg, b.Owner, []string{b.Hash}); err != nil || len(exp) != 0 {
		t.Fatalf("the failed write's message is found: %v %v", exp, err)
	}
	mergeAll(t, s)
	err = s.db.View(func(tx *bolt.Tx) error {
		msgs := tx.Bucket(bktMsg)
		n := 0
		return tx.Bucket(bktHash).ForEach(func(k, _ []byte) error {
			n++
			v := msgs.Get(k[8:])
			if v == nil {
				return fmt.Errorf("index entry %x names no message", k)
			}
			if p := hashPrefix(string(v[recHashAt : recHashAt+hashLen])); string(p[:]) != string(k[:8]) {
				return fmt.Errorf("index entry %x names a message of another hash", k)
			}
			if n > 2 {
				return fmt.Errorf("index holds more than the 2 stored messages")
			}
			return nil
		})
	})
	if err != nil {
		t.Error(err)
	}
	findable(t, s, []storage.Message{a, c})
}

// The filter never says no for a hash it was given, and says maybe for
// about one in a hundred of the rest.
func TestHashFilterHasNoFalseNegatives(t *testing.T) {
	f := newFilter(50_000)
	rng := rand.New(rand.NewPCG(1, 2))
	held := make([]uint64, 50_000)
	for i := range held {
		held[i] = rng.Uint64()
		f.add(held[i])
	}
	for _, p := range held {
		if !f.mayHold(p) {
			t.Fatalf("filter lost %x", p)
		}
	}
	fp := 0
	for range 100_000 {
		if f.mayHold(rng.Uint64()) {
			fp++
		}
	}
	if fp > 2_000 {
		t.Errorf("%d false positives in 100,000, want about 1 %%", fp)
	}
}

// A full filter is built again from the index and the tail (larger, if
// they have grown), and still holds every stored hash: a duplicate is
// still caught.
func TestHashFilterGrows(t *testing.T) {
	s := openTemp(t, Options{noCheckpoints: true})
	var ms []storage.Message
	for i := range 50 {
		ms = append(ms, crashMsg(5, i))
		if _, _, err := s.Store(bg, ms[i]); err != nil {
			t.Fatal(err)
		}
	}
	mergeAll(t, s) // some in the index, the rest in the tail
	for i := 50; i < 60; i++ {
		ms = append(ms, crashMsg(5, i))
		if _, _, err := s.Store(bg, ms[i]); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, s)
	s.filter.added = s.filter.capacity - 1
	if _, _, err := s.Store(bg, crashMsg(5, 60)); err != nil {
		t.Fatal(err)
	}
	if s.filter.added != 61 {
		t.Errorf("filter counts %d entries after its rebuild, want the 61 held", s.filter.added)
	}
	findable(t, s, append(ms, crashMsg(5, 60)))
	s.Close()
}
