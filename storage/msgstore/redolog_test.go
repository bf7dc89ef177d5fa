package msgstore

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/storetest"
)

// Every behaviour of the Store contract holds while stores live only in
// the redo log and the open transaction: reads of an account with stores
// not yet checkpointed go through the commit loop and still see them.
func TestConformanceBeforeCheckpoint(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store { return openTemp(t, Options{noCheckpoints: true}) })
}

// powerCut copies the database and its redo log as the disk holds them
// now, as if the power failed at this moment: bbolt changes its file only
// in synced commits and the log only by synced appends, so the copy is
// what a reboot would find (the page cache holds nothing newer than what
// the acknowledged syncs put on the disk).
func powerCut(t *testing.T, s *Store) string {
	t.Helper()
	dir := t.TempDir()
	dst := filepath.Join(dir, "messages.db")
	for _, suffix := range []string{"", "-redo"} {
		copyFile(t, s.path+suffix, dst+suffix)
	}
	return dst
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// fileMessages counts the message records in the database file itself,
// without the engine (and so without replaying the log).
func fileMessages(t *testing.T, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bktMsg).Stats().KeyN
		return nil
	})
	return n
}

// find retrieves m's namespace and picks m out of it by hash.
func find(t *testing.T, s storage.Store, m storage.Message) (storage.Message, bool) {
	t.Helper()
	got, _, err := s.Retrieve(bg, m.Owner, m.Namespace, "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range got {
		if g.Hash == m.Hash {
			return g, true
		}
	}
	return storage.Message{}, false
}

func mustHave(t *testing.T, s storage.Store, want storage.Message) {
	t.Helper()
	m, ok := find(t, s, want)
	if !ok {
		t.Errorf("acknowledged message %s lost", want.Hash)
		return
	}
	if !bytes.Equal(m.Data, want.Data) || m.Expiry != want.Expiry || m.Timestamp != want.Timestamp {
		t.Errorf("message %s came back altered: expiry %d, want %d", want.Hash, m.Expiry, want.Expiry)
	}
}

func mustLack(t *testing.T, s storage.Store, m storage.Message) {
	t.Helper()
	if _, ok := find(t, s, m); ok {
		t.Errorf("message %s is back, though it was deleted before the power cut", m.Hash)
	}
}

// The durability rule of the redo log: a store is acknowledged once its
// record is synced in the log, before the database file holds it; after a
// power cut the log brings every acknowledged store back, exactly once,
// with its expiry extensions, and a public outbox keeps only its newest
// message.
func TestPowerCutBeforeCheckpointKeepsAcknowledgedStores(t *testing.T) {
	s := openTemp(t, Options{noCheckpoints: true})
	defer s.Close()

	var mu sync.Mutex
	var acked []storage.Message
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				m := crashMsg(w, i)
				if _, _, err := s.Store(bg, m); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, m)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	// An expiry extension is a store of the same message with a later
	// expiry: it changes the database, so it is logged too.
	extended := acked[7]
	extended.Expiry += 5000
	if _, exp, err := s.Store(bg, extended); err != nil || exp != extended.Expiry {
		t.Fatalf("extend by store: expiry %d, %v", exp, err)
	}
	acked[7] = extended

	// A public outbox holds one message: the second replaces the first.
	box := storage.Namespace(-1)
	old := storetest.Msg(storetest.Account(40), box, "old profile", 1e12, 2e12)
	cur := storetest.Msg(storetest.Account(40), box, "new profile", 1e12+1, 2e12)
	for _, m := range []storage.Message{old, cur} {
		if _, _, err := s.Store(bg, m); err != nil {
			t.Fatal(err)
		}
	}

	cut := powerCut(t, s)
	if n := fileMessages(t, cut); n != 0 {
		t.Fatalf("the database file already holds %d messages; the test must catch them in the log alone", n)
	}
	r, err := open(cut, Options{})
	if err != nil {
		t.Fatalf("open after power cut: %v", err)
	}
	for _, m := range acked {
		mustHave(t, r, m)
	}
	mustHave(t, r, cur)
	mustLack(t, r, old)
	want := int64(len(acked) + 1)
	if st := r.Stats(); st.Messages != want {
		t.Errorf("after replay the counter says %d messages, want %d", st.Messages, want)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n := fileMessages(t, cut); n != int(want) {
		t.Errorf("after replay and close the file holds %d messages, want %d", n, want)
	}

	// Opening again replays nothing twice.
	r, err = open(cut, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if st := r.Stats(); st.Messages != want {
		t.Errorf("second open: %d messages, want %d", st.Messages, want)
	}
	mustHave(t, r, extended)
}

// Any write that is not a store (delete, expire, revoke, prune) commits
// the open transaction with the log's position, so a power cut never
// replays a store over a later delete.
func TestPowerCutNeverReplaysOverADelete(t *testing.T) {
	s := openTemp(t, Options{noCheckpoints: true})
	defer s.Close()
	a := storetest.Account(1)
	gone := storetest.Msg(a, 0, "deleted before the cut", 1e12, 2e12)
	kept := storetest.Msg(a, 0, "stored before the delete", 1e12+1, 2e12)
	late := storetest.Msg(a, 0, "stored after the delete", 1e12+2, 2e12)
	for _, m := range []storage.Message{gone, kept} {
		if _, _, err := s.Store(bg, m); err != nil {
			t.Fatal(err)
		}
	}
	if del, err := s.Delete(bg, a, []string{gone.Hash}); err != nil || len(del) != 1 {
		t.Fatalf("delete: %v %v", del, err)
	}
	if _, _, err := s.Store(bg, late); err != nil {
		t.Fatal(err)
	}
	if n := fileMessages(t, powerCut(t, s)); n != 1 {
		t.Fatalf("the delete's commit left %d messages in the file, want 1 (kept)", n)
	}
	r, err := open(powerCut(t, s), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mustHave(t, r, kept)
	mustHave(t, r, late)
	mustLack(t, r, gone)
}

// writeLog appends and syncs records from..to (payload: the lsn in words).
func writeLog(t *testing.T, l *redoLog, from, to uint64) {
	t.Helper()
	for lsn := from; lsn <= to; lsn++ {
		l.add([]byte(fmt.Sprintf("record %d", lsn)))
	}
	if err := l.flush(); err != nil {
		t.Fatal(err)
	}
}

func lsns(recs []redoRecord) []uint64 {
	var out []uint64
	for _, r := range recs {
		out = append(out, r.lsn)
	}
	return out
}

// A reader takes records while they continue the sequence and pass their
// checksums: a torn last record, or the records of an older round that a
// newer one overwrote only in part, end the log there.
func TestRedoLogReadsOnlyTheLatestRound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, recs, err := openRedoLog(path, 77)
	if err != nil || len(recs) != 0 {
		t.Fatalf("new log: %v %v", recs, err)
	}
	writeLog(t, l, 1, 10)
	l.checkpointed()
	writeLog(t, l, 11, 13) // overwrites records 1-3; 4-10 stay behind them
	l.close()

	l, recs, err = openRedoLog(path, 77)
	if err != nil {
		t.Fatal(err)
	}
	if got := lsns(recs); fmt.Sprint(got) != "[11 12 13]" {
		t.Fatalf("records read: %v, want [11 12 13]", got)
	}
	end := l.off
	for _, r := range recs {
		end += redoRecHeader + int64(len(r.payload))
	}
	l.close()

	// Tear the last record: one byte of its payload never reached the disk.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, end-1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	l, recs, err = openRedoLog(path, 77)
	if err != nil {
		t.Fatal(err)
	}
	if got := lsns(recs); fmt.Sprint(got) != "[11 12]" {
		t.Fatalf("after a torn last record: %v, want [11 12]", got)
	}
	l.close()

	// The log of another database (another id) is not replayed: it is
	// made anew, empty.
	l, recs, err = openRedoLog(path, 78)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Fatalf("a log with another id gave %d records", len(recs))
	}
	l.close()
	if _, recs, _ := openRedoLog(path, 77); len(recs) != 0 {
		t.Fatalf("the foreign log was not made anew: %d records", len(recs))
	}
}

// A database made anew beside an old log (the file was deleted, the log
// left) does not take the old database's messages.
func TestNewDatabaseIgnoresAnOldLog(t *testing.T) {
	s := openTemp(t, Options{noCheckpoints: true})
	if _, _, err := s.Store(bg, crashMsg(1, 1)); err != nil {
		t.Fatal(err)
	}
	cut := powerCut(t, s)
	s.Close()
	if err := os.Remove(cut); err != nil {
		t.Fatal(err)
	}
	r, err := open(cut, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if st := r.Stats(); st.Messages != 0 {
		t.Fatalf("a new database took %d messages from an old log", st.Messages)
	}
}

// When the log cannot be written, stores still become durable: each batch
// is committed to the database file instead, and nothing acknowledged is
// lost.
func TestStoresSurviveABrokenLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "messages.db")
	s, err := open(path, Options{noCheckpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	first := crashMsg(2, 0)
	if _, _, err := s.Store(bg, first); err != nil {
		t.Fatal(err)
	}
	s.log.f.Close() // every later append fails
	var acked []storage.Message
	for i := 1; i <= 20; i++ {
		m := crashMsg(2, i)
		if _, _, err := s.Store(bg, m); err != nil {
			t.Fatalf("store with a broken log: %v", err)
		}
		acked = append(acked, m)
	}
	if n := fileMessages(t, powerCut(t, s)); n != 1+len(acked) {
		t.Fatalf("with a broken log the file holds %d messages, want %d", n, 1+len(acked))
	}
	s.Close()
	r, err := open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mustHave(t, r, first)
	for _, m := range acked {
		mustHave(t, r, m)
	}
}
