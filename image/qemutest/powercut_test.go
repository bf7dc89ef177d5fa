package qemutest

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/snodebox/snodebox/image/slot"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// acked is every store the node answered 200, per account.
type acked struct {
	mu   sync.Mutex
	msgs map[int][]string // signer index → base64 data
}

// storeFlat stores from 16 clients over 8 accounts until ctx ends,
// recording each acknowledged message.
func storeFlat(ctx context.Context, bt *boot, signers []*rpcclient.Signer, a *acked) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				idx := (c + i) % len(signers)
				msg := newMessage(bt.tb)
				params := signers[idx].Store(rpcclient.StoreArgs{Data: msg.data, Timestamp: time.Now().UnixMilli(), TTL: 14 * 24 * 3600 * 1000})
				code, _, err := rpcclient.Do(ctx, bt.rpcURL(), "store", params)
				if err != nil || code != http.StatusOK {
					if code == http.StatusTooManyRequests {
						time.Sleep(20 * time.Millisecond)
					}
					continue
				}
				a.mu.Lock()
				a.msgs[idx] = append(a.msgs[idx], msg.b64)
				a.mu.Unlock()
				mu.Lock()
				n++
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	return n
}

// retrieveAll pages through an account's messages.
func retrieveAll(bt *boot, s *rpcclient.Signer) map[string]bool {
	bt.tb.Helper()
	got := map[string]bool{}
	last := ""
	for {
		body := bt.rpc("retrieve", s.Retrieve(rpcclient.RetrieveArgs{LastHash: last, Timestamp: time.Now().UnixMilli()}))
		var ans struct {
			Messages []struct {
				Hash string `json:"hash"`
				Data string `json:"data"`
			} `json:"messages"`
			More bool `json:"more"`
		}
		if err := json.Unmarshal(body, &ans); err != nil {
			bt.fail("retrieve: %v: %s", err, body)
		}
		for _, m := range ans.Messages {
			got[m.Data] = true
			last = m.Hash
		}
		if !ans.More || len(ans.Messages) == 0 {
			return got
		}
	}
}

// QEMU killed with SIGKILL while clients store at full speed, five times in
// a row: every store answered 200 is retrievable after the next boot, and
// the slot state survives.
func TestPowerCutWhileStoring(t *testing.T) {
	e := setup(t)
	im := e.images(t)
	state := e.freshState(t, "powercut")
	signers := make([]*rpcclient.Signer, 8)
	for i := range signers {
		signers[i] = newAccount(t)
	}
	a := &acked{msgs: map[int][]string{}}
	total := 0
	const cuts = 5
	for round := 1; round <= cuts+1; round++ {
		bt := e.startImage(t, state, im.base, "powercut-"+string(rune('0'+round)))
		bt.expect(guardMarker, "snodebox: booting slot A")
		bt.expect(guardHealthy, "slot marked good")
		// Everything acknowledged before the last cut is there.
		for idx, s := range signers {
			have := retrieveAll(bt, s)
			for _, m := range a.msgs[idx] {
				if !have[m] {
					bt.fail("round %d: a message acknowledged before the power cut is gone (account %d: %d acknowledged, %d held)", round, idx, len(a.msgs[idx]), len(have))
				}
			}
		}
		u := bt.update()
		if u.BootedSlot != "A" || !u.Committed || u.LastSwitch != nil {
			bt.fail("round %d: slot state %+v, want A committed, no switch", round, u)
		}
		if round > cuts {
			t.Logf("after %d power cuts: all %d acknowledged stores retrievable", cuts, total)
			bt.powerOff()
			bs := cardState(t, bt.disk)
			if bs.First() != "A" || bs.Left["A"] != slot.MaxAttempts {
				t.Fatalf("boot state after the power cuts: %s", bs)
			}
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() { done <- storeFlat(ctx, bt, signers, a) }()
		time.Sleep(4 * time.Second)
		bt.m.Kill() // the power cut: no shutdown, no sync
		<-bt.m.Done()
		cancel()
		n := <-done
		total += n
		t.Logf("round %d: %d stores acknowledged before the cut (%d in all)", round, n, total)
		if n == 0 {
			t.Fatalf("round %d: no store was acknowledged; the test proves nothing", round)
		}
	}

}
