package msgstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/storetest"
)

func openTemp(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := open(filepath.Join(t.TempDir(), "messages.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store { return openTemp(t, Options{}) })
}

func TestConformanceBoltBatch(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store { return openTemp(t, Options{boltBatch: true}) })
}

func TestSizeCap(t *testing.T) {
	storetest.RunFull(t, func(t *testing.T, capBytes int64) storage.Store { return openTemp(t, Options{CapBytes: capBytes}) })
}

var bg = context.Background()

// Everything, indexes and counters included, survives a close and reopen.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "messages.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.Account(1)
	var want []string
	for i := range 20 {
		m := storetest.Msg(a, 0, fmt.Sprintf("m%d", i), int64(i), 9000)
		if _, _, err := s.Store(bg, m); err != nil {
			t.Fatal(err)
		}
		want = append(want, m.Hash)
	}
	if err := s.Revoke(bg, a, [][]byte{[]byte("token")}, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, _, err := s.Retrieve(bg, a, 0, "", 0, 0)
	if err != nil || len(got) != len(want) {
		t.Fatalf("after reopen: %d messages, %v", len(got), err)
	}
	for i := range want {
		if got[i].Hash != want[i] {
			t.Errorf("message %d = %s, want %s", i, got[i].Hash, want[i])
		}
	}
	// Insertion order continues after the reopen.
	later := storetest.Msg(a, 0, "after reopen", 99, 9000)
	s.Store(bg, later)
	got, _, _ = s.Retrieve(bg, a, 0, want[19], 0, 0)
	if len(got) != 1 || got[0].Hash != later.Hash {
		t.Errorf("message stored after reopen is not last: %v", got)
	}
	if st := s.Stats(); st.Messages != 21 || st.Accounts != 1 || st.DBBytes == 0 {
		t.Errorf("stats after reopen: %+v", st)
	}
	if r, _ := s.IsRevoked(bg, a, []byte("token")); !r {
		t.Error("revocation lost on reopen")
	}
}

// Concurrent stores share commits: with many writers there are far fewer
// commits than stores.
func TestGroupCommit(t *testing.T) {
	s := openTemp(t, Options{})
	defer s.Close()
	// Every commit is fdatasynced: the SIGKILL tests prove acknowledgement
	// follows the commit, this that the commit reaches the disk.
	if s.db.NoSync || s.db.NoGrowSync {
		t.Fatalf("bbolt NoSync=%v NoGrowSync=%v; acknowledged stores would not survive a power cut", s.db.NoSync, s.db.NoGrowSync)
	}
	const writers, each = 32, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, _, err := s.Store(bg, storetest.Msg(storetest.Account(w), 0, fmt.Sprint(i), 1, 9000)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.Stores != writers*each {
		t.Fatalf("stores = %d", st.Stores)
	}
	if st.Fsyncs >= st.Stores {
		t.Errorf("%d commits for %d concurrent stores: no group commit", st.Fsyncs, st.Stores)
	}
	t.Logf("%d stores in %d commits", st.Stores, st.Fsyncs)
}

// Writers that become runnable together (a peer's forwarded batch, served
// one goroutine per call) share a sync: the first to arrive does not leave
// alone with each of the rest in flights of their own.
func TestRunnableWritersShareASync(t *testing.T) {
	s := openTemp(t, Options{noCheckpoints: true})
	defer s.Close()
	// One P makes "runnable together" exact: none of the writers below
	// runs until this goroutine blocks.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const rounds, writers = 20, 8
	before := s.Stats().Fsyncs
	for round := range rounds {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, _, err := s.Store(bg, storetest.Msg(storetest.Account(w), 0, fmt.Sprint("r", round), 1, 9000)); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	// One sync a round; the scheduler may now and then run the commit
	// loop early (it checks its global queue every 61 ticks), so allow a
	// second. Without the yield before a flight leaves this took one sync
	// per writer.
	if n := s.Stats().Fsyncs - before; n > 2*rounds {
		t.Fatalf("%d rounds of %d writers runnable together took %d syncs, want at most %d", rounds, writers, n, 2*rounds)
	}
}

// Pruning many messages takes several transactions of at most pruneChunk.
func TestPruneInChunks(t *testing.T) {
	s := openTemp(t, Options{})
	defer s.Close()
	const n = 2*pruneChunk + 17
	var ms []storage.Message
	for i := range n {
		ms = append(ms, storetest.Msg(storetest.Account(i%50), 0, fmt.Sprint(i), 1, int64(1000+i%3)))
	}
	keep := storetest.Msg(storetest.Account(1), 0, "keep", 1, 5000)
	ms = append(ms, keep)
	if k, err := s.StoreBatch(bg, ms); err != nil || k != n+1 {
		t.Fatalf("batch: %d, %v", k, err)
	}
	before := s.Stats().Fsyncs
	pruned, err := s.Prune(bg, 1002)
	if err != nil || pruned != n {
		t.Fatalf("pruned %d, %v; want %d", pruned, err, n)
	}
	st := s.Stats()
	if commits := st.Fsyncs - before; commits < 3 {
		t.Errorf("%d messages pruned in %d commits; want chunks of at most %d", n, commits, pruneChunk)
	}
	if st.Messages != 1 || st.Accounts != 1 || st.Pruned != n || st.LastPrune != 1002 {
		t.Errorf("stats after prune: %+v", st)
	}
}

// Close while calls are in flight: each call either completes or fails
// with ErrClosed; none hangs or panics.
func TestCloseWhileBusy(t *testing.T) {
	s := openTemp(t, Options{})
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; ; i++ {
				_, _, err := s.Store(bg, storetest.Msg(storetest.Account(w), 0, fmt.Sprint(i), 1, 9000))
				if err == nil {
					_, _, err = s.Retrieve(bg, storetest.Account(w), 0, "", 5, 0)
				}
				if errors.Is(err, storage.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	close(start)
	for s.Stats().Stores < 100 {
		s.Retrieve(bg, storetest.Account(0), 0, "", 1, 0)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}

const crashEnv = "MSGSTORE_CRASH_CHILD_DB"

// crashMsg is the deterministic message writer w stores as its i-th.
func crashMsg(w, i int) storage.Message {
	data := fmt.Sprintf("writer %d message %d ", w, i)
	for len(data) < 1024 {
		data += fmt.Sprintf("%x", len(data)*(w+1)*(i+7))
	}
	return storetest.Msg(storetest.Account(w), storage.Namespace(w%3), data, int64(1e12+i), int64(2e12+i))
}

// crashChild stores from 8 writers until it is killed, printing each
// acknowledged message as "w i hash" only after Store returned.
func crashChild(path string) {
	// Each round stores new messages, so the database grows across kills.
	first, _ := strconv.Atoi(os.Getenv(crashEnv + "_FIRST"))
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := first; ; i++ {
				m := crashMsg(w, i)
				if _, _, err := s.Store(bg, m); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "%d %d %s\n", w, i, m.Hash) // unbuffered: one write(2)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// The crash proof: a child process stores concurrently and reports each
// acknowledged store; it is SIGKILLed mid-stream; every acknowledged
// message must be in the reopened database with the right data.
func TestCrashKeepsAcknowledgedStores(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "messages.db")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedStores$")
		cmd.Env = append(os.Environ(), crashEnv+"="+path, fmt.Sprintf("%s_FIRST=%d", crashEnv, round*1_000_000))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		type ack struct{ w, i int }
		var acks []ack
		sc := bufio.NewScanner(out)
		killed := false
		for sc.Scan() {
			var a ack
			var h string
			if _, err := fmt.Sscanf(sc.Text(), "%d %d %s", &a.w, &a.i, &h); err != nil {
				t.Fatalf("child said %q: %v", sc.Text(), err)
			}
			if h != crashMsg(a.w, a.i).Hash {
				t.Fatalf("child acknowledged %s for writer %d message %d", h, a.w, a.i)
			}
			acks = append(acks, a)
			// Kill at a different point each round, mid-stream.
			if !killed && len(acks) >= 300+200*round {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child exited after %d acks before it was killed", round, len(acks))
		}
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		for _, a := range acks {
			want := crashMsg(a.w, a.i)
			got, _, err := s.Retrieve(bg, want.Owner, want.Namespace, "", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, m := range got {
				if m.Hash == want.Hash {
					found = true
					if !bytes.Equal(m.Data, want.Data) || m.Expiry != want.Expiry || m.Timestamp != want.Timestamp {
						t.Errorf("round %d: message %d/%d came back altered", round, a.w, a.i)
					}
				}
			}
			if !found {
				t.Errorf("round %d: acknowledged message %d/%d (%s) lost", round, a.w, a.i, want.Hash)
			}
		}
		st := s.Stats()
		t.Logf("round %d: %d acknowledged before SIGKILL, all present; %d messages in the db", round, len(acks), st.Messages)
		if st.Messages < int64(len(acks)) {
			t.Errorf("round %d: counter says %d messages, fewer than %d acknowledged", round, st.Messages, len(acks))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Walks and drops larger than one read batch (walkBatch) or one deletion
// chunk (pruneChunk) visit every message exactly once.
func TestRangeWalksAcrossBatches(t *testing.T) {
	s := openTemp(t, Options{})
	defer s.Close()
	positions := []uint64{10, 1 << 40, 1 << 63}
	per := []int{walkBatch*2 + 3, pruneChunk + 5, 7}
	var ms []storage.Message
	for p, pos := range positions {
		for i := range per[p] {
			// Two accounts per position, several namespaces.
			a := storetest.AccountAt(pos, byte(i%2))
			ms = append(ms, storetest.Msg(a, storage.Namespace(i%3), fmt.Sprintf("%d-%d", p, i), 1, 9000))
		}
	}
	if n, err := s.StoreBatch(bg, ms); err != nil || n != len(ms) {
		t.Fatalf("stored %d of %d: %v", n, len(ms), err)
	}
	walk := func(lower, upper uint64) (int, int) {
		seen := map[string]bool{}
		visits := 0
		err := s.ForEach(bg, lower, upper, func(m storage.Message) error {
			visits++
			seen[m.Hash] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return visits, len(seen)
	}
	cases := []struct {
		name         string
		lower, upper uint64
		want         int
	}{
		{"whole ring", 5, 5, len(ms)},
		{"first position", 0, 10, per[0]},
		{"second and third", 10, 1 << 63, per[1] + per[2]},
		{"wrap", 1 << 40, 10, per[0] + per[2]},
	}
	for _, c := range cases {
		visits, distinct := walk(c.lower, c.upper)
		if visits != c.want || distinct != c.want {
			t.Errorf("%s: %d visits of %d messages, want %d", c.name, visits, distinct, c.want)
		}
	}
	n, err := s.DropRange(bg, 10, 1<<40)
	if err != nil || n != per[1] {
		t.Errorf("drop range: %d, %v; want %d", n, err, per[1])
	}
	if visits, _ := walk(0, 0); visits != per[0]+per[2] {
		t.Errorf("after drop: %d messages left, want %d", visits, per[0]+per[2])
	}
	if st := s.Stats(); st.Messages != int64(per[0]+per[2]) || st.Accounts != 4 {
		t.Errorf("stats after drop: %+v", st)
	}
}

// On a card smaller than the configured cap the filesystem's free space
// (less a reserve) is the limit: stores fail with ErrFull before the disk
// fills, and reads keep working.
func TestSmallDiskLimitsBeforeCap(t *testing.T) {
	const disk = diskReserve + 2<<20 // a filesystem with 2 MiB to spare
	orig := statfsAvail
	t.Cleanup(func() { statfsAvail = orig })
	var path string
	statfsAvail = func(string) (int64, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return 0, err
		}
		return disk - fi.Size(), nil
	}
	path = filepath.Join(t.TempDir(), "messages.db")
	s, err := open(path, Options{}) // default cap: 24 GiB
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := storetest.Account(1)
	var stored int
	var last error
	for i := range 5000 {
		_, _, last = s.Store(bg, storetest.Msg(a, 0, fmt.Sprintf("%d %04000d", i, i), 1, 9000))
		if last != nil {
			break
		}
		stored++
	}
	if !errors.Is(last, storage.ErrFull) {
		t.Fatalf("after %d stores: %v, want ErrFull", stored, last)
	}
	fi, _ := os.Stat(path)
	if fi.Size() > disk-diskReserve+16<<20 {
		t.Errorf("database grew to %d bytes on a disk with %d to spare", fi.Size(), disk-diskReserve)
	}
	if got, _, err := s.Retrieve(bg, a, 0, "", 3, 0); err != nil || len(got) != 3 {
		t.Errorf("retrieve when full: %d, %v", len(got), err)
	}
	t.Logf("%d stores of 4 KB fit before ErrFull; file %d bytes", stored, fi.Size())
}

// A database written by a build with another layout is refused, not misread.
func TestRefusesOtherLayoutVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "messages.db")
	s, err := open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error { return putU64(tx.Bucket(bktMeta), keyVersion, layoutVersion+1) })
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(path, Options{}); err == nil {
		s.Close()
		t.Fatal("opened a database with a newer layout version")
	}
}

// A write that panics fails alone; the commit loop keeps serving.
func TestPanickingWriteDoesNotStopWrites(t *testing.T) {
	s := openTemp(t, Options{})
	defer s.Close()
	err := s.write(0, func(*bolt.Tx) error { panic("boom") }, nil)
	if err == nil {
		t.Fatal("a panicking write reported success")
	}
	if _, _, err := s.Store(bg, storetest.Msg(storetest.Account(1), 0, "after", 1, 9000)); err != nil {
		t.Fatalf("store after a panicking write: %v", err)
	}
}

// Big messages are walked in batches bounded by bytes, and none is skipped
// at a batch boundary.
func TestForEachBigMessages(t *testing.T) {
	s := openTemp(t, Options{})
	defer s.Close()
	a := storetest.Account(1)
	big := bytes.Repeat([]byte("x"), 76_000)
	want := map[string]bool{}
	for i := range 40 { // ~3 MB: at least three walk batches
		d := append([]byte(strconv.Itoa(i)+":"), big...)
		m := storage.Message{Hash: storage.MessageHash(a, 0, d), Owner: a, Timestamp: 1, Expiry: 9000, Data: d}
		if _, _, err := s.Store(bg, m); err != nil {
			t.Fatal(err)
		}
		want[m.Hash] = true
	}
	got := map[string]bool{}
	if err := s.ForEach(bg, 0, 0, func(m storage.Message) error {
		if len(m.Data) < 76_000 || got[m.Hash] {
			t.Errorf("message %s: %d bytes, seen before %v", m.Hash, len(m.Data), got[m.Hash])
		}
		got[m.Hash] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("walked %d of %d messages", len(got), len(want))
	}
}
