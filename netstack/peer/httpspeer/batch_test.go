package httpspeer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snodebox/snodebox/netstack/peer"
)

// gatedEcho serves storage_cc by echoing the body with the caller's key
// prefix, holding every call until release is closed once held calls are
// in progress, so a test can fill the queue behind them.
type gatedEcho struct {
	release chan struct{}
	held    atomic.Int64
	calls   atomic.Int64
}

func (g *gatedEcho) handle(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
	g.calls.Add(1)
	g.held.Add(1)
	<-g.release
	if bytes.HasPrefix(body, []byte("fail")) {
		return peer.Reply{Status: http.StatusBadRequest, Body: []byte("refused " + string(body))}
	}
	return peer.Reply{Status: http.StatusOK, Body: append([]byte(fmt.Sprintf("%x:", []byte(from[:2]))), body...)}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdCalls starts as many calls as a pool allows exchanges in flight and
// waits until the peer holds them all.
func holdCalls(t *testing.T, a, b *testNode, g *gatedEcho, wg *sync.WaitGroup) {
	t.Helper()
	for range maxBatchesInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.tr.Call(context.Background(), b.rec, peer.CmdStorageCC, []byte("held"))
		}()
	}
	waitFor(t, "calls held", func() bool { return g.held.Load() == maxBatchesInFlight })
}

// waitQueued waits until n calls wait in a's queue for b.
func waitQueued(t *testing.T, a, b *testNode, n int) {
	t.Helper()
	pc, err := a.tr.pool(b.rec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queue to fill", func() bool {
		pc.batch.mu.Lock()
		defer pc.batch.mu.Unlock()
		return len(pc.batch.queue) == n
	})
}

// fillQueue starts the calls that the peer holds (as many as a pool allows
// exchanges in flight) and then n more, which queue behind them.
func fillQueue(t *testing.T, a, b *testNode, g *gatedEcho, n int) (replies []peer.Reply, errs []error, wait func()) {
	t.Helper()
	const held = maxBatchesInFlight
	replies, errs = make([]peer.Reply, n+held), make([]error, n+held)
	var wg sync.WaitGroup
	call := func(i int) {
		defer wg.Done()
		body := []byte(fmt.Sprintf("store %d", i))
		if i%7 == 3 {
			body = []byte(fmt.Sprintf("fail %d", i))
		}
		replies[i], errs[i] = a.tr.Call(context.Background(), b.rec, peer.CmdStorageCC, body)
	}
	for i := range held {
		wg.Add(1)
		go call(i)
	}
	waitFor(t, "calls held by the peer", func() bool { return g.held.Load() == held })
	for i := held; i < n+held; i++ {
		wg.Add(1)
		go call(i)
	}
	waitQueued(t, a, b, n)
	close(g.release)
	return replies, errs, wg.Wait
}

func checkEchoes(t *testing.T, a *testNode, replies []peer.Reply, errs []error) {
	t.Helper()
	prefix := fmt.Sprintf("%x:", []byte(a.keys.Ed25519Pub[:2]))
	for i, r := range replies {
		if errs[i] != nil {
			t.Errorf("call %d: %v", i, errs[i])
			continue
		}
		want := peer.Reply{Status: http.StatusOK, Body: []byte(fmt.Sprintf("%sstore %d", prefix, i))}
		if i%7 == 3 {
			want = peer.Reply{Status: http.StatusBadRequest, Body: []byte(fmt.Sprintf("refused fail %d", i))}
		}
		if r.Status != want.Status || !bytes.Equal(r.Body, want.Body) {
			t.Errorf("call %d: got %d %q, want %d %q", i, r.Status, r.Body, want.Status, want.Body)
		}
	}
}

// While a peer is busy with the exchanges a pool allows, further
// storage_cc calls queue and go together in one batch exchange; each
// caller gets its own reply (status and body, failures included), in the
// right order, with the caller's verified key seen by the handler.
func TestBusyCallsShareOneExchange(t *testing.T) {
	a, b := newTestNode(t, everyone), newTestNode(t, everyone)
	g := &gatedEcho{release: make(chan struct{})}
	b.tr.Handle(peer.CmdStorageCC, g.handle)
	replies, errs, wait := fillQueue(t, a, b, g, 40)
	wait()
	checkEchoes(t, a, replies, errs)
	if got := g.calls.Load(); got != 40+maxBatchesInFlight {
		t.Errorf("handler ran %d times, want %d", got, 40+maxBatchesInFlight)
	}
	alone, batches := b.exchangeCount(PathPrefix+peer.CmdStorageCC), b.exchangeCount(PathPrefix+batchCommand)
	if alone != maxBatchesInFlight || batches != 1 {
		t.Errorf("exchanges: %d alone and %d batches, want %d and 1", alone, batches, maxBatchesInFlight)
	}
	// An idle pool sends a call alone again.
	g2 := &gatedEcho{release: make(chan struct{})}
	close(g2.release)
	b.tr.Handle(peer.CmdStorageCC, g2.handle)
	if _, err := a.tr.Call(context.Background(), b.rec, peer.CmdStorageCC, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := b.exchangeCount(PathPrefix + peer.CmdStorageCC); got != maxBatchesInFlight+1 {
		t.Errorf("an idle pool's call: %d exchanges alone in all, want %d", got, maxBatchesInFlight+1)
	}
}

// A peer that does not know the batch command (an older build) answers
// 404: the queued calls are sent one by one, and so is every later call.
func TestBatchFallsBackForOlderPeer(t *testing.T) {
	a, b := newTestNode(t, everyone), newTestNode(t, everyone)
	b.noBatch.Store(true)
	g := &gatedEcho{release: make(chan struct{})}
	b.tr.Handle(peer.CmdStorageCC, g.handle)
	replies, errs, wait := fillQueue(t, a, b, g, 10)
	wait()
	checkEchoes(t, a, replies, errs)
	if got := b.exchangeCount(PathPrefix + batchCommand); got != 1 {
		t.Errorf("%d batch attempts, want 1", got)
	}
	if got := b.exchangeCount(PathPrefix + peer.CmdStorageCC); got != 10+maxBatchesInFlight {
		t.Errorf("%d exchanges alone, want %d", got, 10+maxBatchesInFlight)
	}
	pc, _ := a.tr.pool(b.rec)
	pc.batch.mu.Lock()
	unsupported := pc.batch.unsupported
	pc.batch.mu.Unlock()
	if !unsupported {
		t.Error("pool still batches for a peer that refused a batch")
	}
}

// A queued call whose caller gives up returns at once with a timeout; the
// others in its batch still get their replies.
func TestQueuedCallHonoursItsContext(t *testing.T) {
	a, b := newTestNode(t, everyone), newTestNode(t, everyone)
	g := &gatedEcho{release: make(chan struct{})}
	b.tr.Handle(peer.CmdStorageCC, g.handle)
	var wg sync.WaitGroup
	holdCalls(t, a, b, g, &wg)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := a.tr.Call(ctx, b.rec, peer.CmdStorageCC, []byte("impatient"))
	if !errors.Is(err, peer.ErrTimeout) {
		t.Fatalf("queued call past its deadline: %v, want ErrTimeout", err)
	}
	close(g.release)
	wg.Wait()
}

// The server checks what it is sent: a malformed batch is a 400, a call
// of a command that does not coalesce or is unknown fails alone.
func TestServeBatchRefusals(t *testing.T) {
	a, b := newTestNode(t, everyone), newTestNode(t, everyone)
	g := &gatedEcho{release: make(chan struct{})}
	close(g.release)
	b.tr.Handle(peer.CmdStorageCC, g.handle)
	b.tr.Handle(peer.CmdOnionRequest, func(context.Context, ed25519.PublicKey, []byte) peer.Reply {
		t.Error("onion_request ran inside a batch")
		return peer.Reply{Status: http.StatusOK}
	})
	pc, err := a.tr.pool(b.rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range [][]byte{nil, {0}, {0, 0}, {0, 1}, {0, 1, 10, 's'}, {0, 1, 0, 0, 0, 0, 9}, {0, 1, 0, 0, 0, 0, 0, 'x'}} {
		r, err := a.tr.callOne(context.Background(), b.rec, pc, batchCommand, body)
		if err != nil || r.Status != http.StatusBadRequest {
			t.Errorf("batch %x: %d %q %v, want 400", body, r.Status, r.Body, err)
		}
	}
	calls := []*queuedCall{
		{command: peer.CmdStorageCC, body: []byte("ok")},
		{command: peer.CmdOnionRequest, body: []byte("hop")},
		{command: "nonesuch", body: nil},
	}
	r, err := a.tr.callOne(context.Background(), b.rec, pc, batchCommand, encodeBatch(calls))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("batch: %d %q %v", r.Status, r.Body, err)
	}
	replies, err := decodeBatchReply(r.Body)
	if err != nil || len(replies) != 3 {
		t.Fatalf("batch reply: %v, %v", replies, err)
	}
	// (a command that does not coalesce is refused before it is looked up)
	for i, want := range []int{http.StatusOK, http.StatusBadRequest, http.StatusBadRequest} {
		if replies[i].Status != want {
			t.Errorf("call %d (%s): status %d %q, want %d", i, calls[i].command, replies[i].Status, replies[i].Body, want)
		}
	}
}

// Batch and reply encodings round-trip, and no truncation of either
// decodes (nor panics).
func TestBatchEncoding(t *testing.T) {
	calls := []*queuedCall{{command: "storage_cc", body: []byte("abc")}, {command: "x", body: nil}}
	enc := encodeBatch(calls)
	got, err := decodeBatch(enc)
	if err != nil || len(got) != 2 || got[0].command != "storage_cc" || string(got[0].body) != "abc" || got[1].command != "x" || len(got[1].body) != 0 {
		t.Fatalf("decodeBatch: %+v, %v", got, err)
	}
	for i := range len(enc) {
		if _, err := decodeBatch(enc[:i]); err == nil {
			t.Errorf("a batch cut to %d of %d bytes decoded", i, len(enc))
		}
	}
	rep := encodeBatchReply([]peer.Reply{{Status: 200, Body: []byte("hi")}, {Status: 507}})
	rs, err := decodeBatchReply(rep)
	if err != nil || len(rs) != 2 || rs[0].Status != 200 || string(rs[0].Body) != "hi" || rs[1].Status != 507 {
		t.Fatalf("decodeBatchReply: %+v, %v", rs, err)
	}
	for i := range len(rep) {
		if _, err := decodeBatchReply(rep[:i]); err == nil {
			t.Errorf("a reply cut to %d of %d bytes decoded", i, len(rep))
		}
	}
}

// A batch the peer refuses as a whole (here: it no longer knows the
// caller) gives every call in it the peer's answer, status and body, as
// each would have got alone; none gets a transport error.
func TestRefusedBatchAnswersEachCall(t *testing.T) {
	var refuse atomic.Bool
	a := newTestNode(t, everyone)
	b := newTestNode(t, func(ed25519.PublicKey) bool { return !refuse.Load() })
	g := &gatedEcho{release: make(chan struct{})}
	b.tr.Handle(peer.CmdStorageCC, g.handle)
	var wg sync.WaitGroup
	holdCalls(t, a, b, g, &wg)
	const n = 5
	replies, errs := make([]peer.Reply, n), make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], errs[i] = a.tr.Call(context.Background(), b.rec, peer.CmdStorageCC, []byte("queued"))
		}()
	}
	waitQueued(t, a, b, n)
	refuse.Store(true)
	close(g.release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || replies[i].Status != http.StatusForbidden || string(replies[i].Body) != "unknown service node" {
			t.Errorf("call %d: %d %q %v, want 403 unknown service node", i, replies[i].Status, replies[i].Body, errs[i])
		}
	}
}
