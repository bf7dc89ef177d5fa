package storage

import (
	"fmt"
	"slices"
	"testing"
)

// §4.2: 100 + len(hash) + ⌊len(data)·4/3⌋.
func TestRetrieveCost(t *testing.T) {
	for _, tc := range []struct {
		hash, data int
		want       int64
	}{
		{43, 0, 143}, {43, 1, 144}, {43, 2, 145}, {43, 3, 147}, {43, 301, 544}, {43, 76_000, 143 + 101_333},
	} {
		if got := RetrieveCost(tc.hash, tc.data); got != tc.want {
			t.Errorf("RetrieveCost(%d, %d) = %d, want %d", tc.hash, tc.data, got, tc.want)
		}
	}
}

// §4.2: the page stops before the message that would pass max_size, after
// max_count messages, and always holds the first message.
func TestRetrievePage(t *testing.T) {
	const each = 544
	for _, tc := range []struct {
		name     string
		maxCount int
		maxSize  int64
		want     int
	}{
		{"exactly three", 0, 3 * each, 3},
		{"one byte short of three", 0, 3*each - 1, 2},
		{"tiny still takes one", 0, 1, 1},
		{"no limits", 0, 0, 5},
		{"negative size is no limit", 0, -5, 5},
		{"count binds first", 2, 5 * each, 2},
		{"size binds first", 4, 2 * each, 2},
	} {
		p := RetrievePage{MaxCount: tc.maxCount, MaxSize: tc.maxSize}
		n := 0
		for n < 5 && p.Take(each) {
			n++
		}
		if n != tc.want {
			t.Errorf("%s: took %d, want %d", tc.name, n, tc.want)
		}
		if full := tc.maxCount > 0 && n == tc.maxCount; p.Full() != full {
			t.Errorf("%s: Full() = %v after %d, want %v", tc.name, p.Full(), n, full)
		}
	}
}

func TestExpiryModeChanges(t *testing.T) {
	for _, tc := range []struct {
		mode      ExpiryMode
		cur, want int64
		changes   bool
	}{
		{ExpirySet, 100, 50, true}, {ExpirySet, 100, 150, true}, {ExpirySet, 100, 100, false},
		{ExpiryShorten, 100, 50, true}, {ExpiryShorten, 100, 150, false}, {ExpiryShorten, 100, 100, false},
		{ExpiryExtend, 100, 50, false}, {ExpiryExtend, 100, 150, true}, {ExpiryExtend, 100, 100, false},
	} {
		if got := tc.mode.Changes(tc.cur, tc.want); got != tc.changes {
			t.Errorf("mode %d: %d → %d changes = %v, want %v", tc.mode, tc.cur, tc.want, got, tc.changes)
		}
	}
}

func TestExpiryUpdatesReportEachHashOnceSorted(t *testing.T) {
	var us ExpiryUpdates
	if got := us.List(); len(got) != 0 {
		t.Fatalf("empty List = %+v", got)
	}
	// "b" is named twice: applied in order (100 → 80 → 90 under Set), reported once.
	if e, ch := us.Apply("b", 100, 80, ExpirySet); e != 80 || !ch {
		t.Errorf("first b = %d %v", e, ch)
	}
	if e, ch := us.Apply("b", 80, 90, ExpirySet); e != 90 || !ch {
		t.Errorf("second b = %d %v", e, ch)
	}
	if e, ch := us.Apply("a", 100, 150, ExpiryShorten); e != 100 || ch {
		t.Errorf("a = %d %v, want unchanged 100", e, ch)
	}
	want := []ExpiryUpdate{{Hash: "a", Expiry: 100}, {Hash: "b", Expiry: 90, Changed: true}}
	if got := us.List(); !slices.Equal(got, want) {
		t.Errorf("List = %+v, want %+v", got, want)
	}
}

// §4.9: at most 50 per account, oldest dropped, a re-revoke refreshes.
func TestRevocationList(t *testing.T) {
	tok := func(i int) []byte { return []byte(fmt.Sprintf("token-%03d", i)) }
	ids := func(list []Revocation) []string {
		var out []string
		for _, r := range list {
			out = append(out, string(r.Token))
		}
		return out
	}
	var list []Revocation
	for i := range MaxRevoked {
		list = Revoke(list, [][]byte{tok(i)}, int64(1000+i))
	}
	list = Revoke(list, [][]byte{tok(0)}, 2000)
	list = Revoke(list, [][]byte{tok(100), tok(101)}, 2001)
	var want []string
	for i := 3; i < MaxRevoked; i++ {
		want = append(want, string(tok(i)))
	}
	want = append(want, string(tok(0)), string(tok(100)), string(tok(101)))
	if got := ids(list); !slices.Equal(got, want) {
		t.Errorf("after refresh and cap:\n got %q\nwant %q", got, want)
	}
	// Equal times keep revoke order; an earlier time sorts before.
	list = Revoke(nil, [][]byte{tok(1), tok(2)}, 5)
	list = Revoke(list, [][]byte{tok(3)}, 4)
	if got, want := ids(list), []string{"token-003", "token-001", "token-002"}; !slices.Equal(got, want) {
		t.Errorf("order = %q, want %q", got, want)
	}
	if !IsRevoked(list, tok(2)) || IsRevoked(list, tok(4)) {
		t.Error("IsRevoked wrong")
	}
	list, n := Unrevoke(list, [][]byte{tok(2), tok(4), tok(2)})
	if n != 1 || IsRevoked(list, tok(2)) || len(list) != 2 {
		t.Errorf("Unrevoke: n=%d list=%q", n, ids(list))
	}
	// The list keeps its own copies of the tokens.
	t5 := tok(5)
	list = Revoke(list, [][]byte{t5}, 6)
	t5[0] = 'X'
	if !IsRevoked(list, tok(5)) {
		t.Error("revoked token aliases the caller's slice")
	}
}
