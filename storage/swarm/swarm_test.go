package swarm

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/peer/memtransport"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/memstore"
)

// staticSource is a registry the test edits; every edit is a new block.
type staticSource struct {
	mu     sync.Mutex
	snap   registry.Snapshot
	served uint64
}

func (s *staticSource) set(nodes []registry.Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = registry.Snapshot{Nodes: nodes, Height: s.snap.Height + 1, BlockHash: fmt.Sprint(s.snap.Height + 1)}
}

func (s *staticSource) Fetch(ctx context.Context) (registry.Snapshot, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap, true, nil
}

func (s *staticSource) Name() string { return "static" }

type tnode struct {
	keys  *identity.Keys
	node  registry.Node
	store *memstore.Store
	sw    *Swarm
	ep    *memtransport.Endpoint
	ccs   chan string // storage_cc methods received
}

type tnet struct {
	t      testing.TB
	net    *memtransport.Network
	src    *staticSource
	nodes  []*tnode
	logger *slog.Logger // nil: slog.Default
}

func newNet(t testing.TB) *tnet {
	dumpRetryPause = 50 * time.Millisecond
	return &tnet{t: t, net: memtransport.NewNetwork(), src: &staticSource{}}
}

func (n *tnet) add(i int) *tnode {
	seed := sha256.Sum256([]byte("swarm-test-" + strconv.Itoa(i)))
	k, err := identity.FromSeed(seed[:])
	if err != nil {
		n.t.Fatal(err)
	}
	var rn registry.Node
	copy(rn.Ed25519[:], k.Ed25519Pub)
	rn.Legacy, rn.X25519 = rn.Ed25519, k.X25519Pub
	rn.IP = netip.MustParseAddr("127.0.0.1")
	rn.HTTPSPort = uint16(40000 + i)
	tn := &tnode{keys: k, node: rn, store: memstore.New(), ep: n.net.Join(rn.Ed25519), ccs: make(chan string, 1000)}
	tn.sw = New(Config{
		Keys: k, Self: rn, Source: n.src, Transport: tn.ep, Store: tn.store,
		PollInterval: 20 * time.Millisecond, MaintainInterval: 20 * time.Millisecond,
		HandshakeInterval: 30 * time.Millisecond, ForwardTimeout: time.Second,
		Reach: ReachConfig{Tick: -1}, Logger: n.logger,
	})
	tn.sw.Register(tn.ep)
	tn.ep.Handle(peer.CmdStorageCC, func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
		v, err := bencode.Unmarshal(body)
		l, _ := v.([]any)
		if err != nil || len(l) != 2 {
			return peer.Reply{Status: 400, Body: []byte("bad storage_cc")}
		}
		method := string(l[0].([]byte))
		if method == "store" {
			m, err := MessageFromStoreParams(bencode.MustMarshal(l[1]))
			if err != nil {
				return peer.Reply{Status: 400, Body: []byte(err.Error())}
			}
			tn.store.Store(ctx, m)
		}
		tn.ccs <- method
		return peer.Reply{Status: 200, Body: bencode.MustMarshal(map[string]any{"hash": "x"})}
	})
	n.nodes = append(n.nodes, tn)
	return tn
}

// publish puts nodes into swarms: assign[i] is node i's swarm id.
func (n *tnet) publish(assign map[*tnode]uint64) {
	var nodes []registry.Node
	for tn, id := range assign {
		rn := tn.node
		rn.SwarmID = id
		nodes = append(nodes, rn)
	}
	n.src.set(nodes)
}

func (n *tnet) run(ctx context.Context, nodes ...*tnode) {
	for _, tn := range nodes {
		go tn.sw.Run(ctx)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// A bound on polling, not a performance limit: the work is tiny.
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("never happened: %s", what)
}

// accountAt builds an account whose swarm-space position is pos.
func accountAt(pos uint64, salt byte) storage.Account {
	a := storage.Account{Type: 0x05}
	a.Key[8] = salt // XORed away by the next word
	a.Key[16] = salt
	for i := 0; i < 8; i++ {
		a.Key[i] = byte(pos >> (56 - 8*i))
	}
	return a
}

func msg(a storage.Account, i int) storage.Message {
	data := []byte("message " + strconv.Itoa(i))
	now := time.Now().UnixMilli()
	return storage.Message{Owner: a, Hash: storage.MessageHash(a, 0, data), Timestamp: now, Expiry: now + 3600_000, Data: data}
}

func storeParams(m storage.Message) []byte {
	d := map[string]any{"pubkey": m.Owner.Bytes(), "timestamp": m.Timestamp, "expiry": m.Expiry, "data": m.Data}
	if m.Namespace != 0 {
		d["namespace"] = int64(m.Namespace)
	}
	return bencode.MustMarshal(d)
}

func has(st storage.Store, m storage.Message) bool {
	got, _ := st.GetExpiries(context.Background(), m.Owner, []string{m.Hash})
	_, ok := got[m.Hash]
	return ok
}

func TestLookupAndReadiness(t *testing.T) {
	n := newNet(t)
	a, b, c := n.add(0), n.add(1), n.add(2)
	if r := a.sw.NotReady(); len(r) == 0 {
		t.Fatal("ready before any snapshot")
	}
	if _, _, ours := a.sw.Lookup(accountAt(5, 0)); ours {
		t.Fatal("owns accounts before any snapshot")
	}
	const s1, s2 = uint64(1000), uint64(1) << 63
	n.publish(map[*tnode]uint64{a: s1, b: s1, c: s2})
	for _, tn := range []*tnode{a, b, c} {
		snap, _, _ := n.src.Fetch(context.Background())
		tn.sw.Apply(snap)
		if r := tn.sw.NotReady(); r != nil {
			t.Fatalf("not ready in a swarm: %v", r)
		}
	}
	id, members := a.sw.Ours()
	if id != s1 || len(members) != 2 {
		t.Fatalf("ours = %x with %d members", id, len(members))
	}
	near1, near2 := accountAt(s1+5, 1), accountAt(s2-5, 1)
	if id, _, ours := a.sw.Lookup(near1); !ours || id != s1 {
		t.Fatalf("account near swarm 1: id %x ours %v", id, ours)
	}
	id, ms, ours := a.sw.Lookup(near2)
	if ours || id != s2 || len(ms) != 1 || ms[0].Ed25519 != c.node.Ed25519 {
		t.Fatalf("account of swarm 2 from node a: id %x ours %v members %v (a 421 must name swarm 2)", id, ours, ms)
	}
	if _, _, ours := c.sw.Lookup(near2); !ours {
		t.Fatal("node c does not own its swarm's account")
	}

	// A node the registry lists outside any swarm is not ready.
	n.publish(map[*tnode]uint64{a: registry.NoSwarm, b: s1, c: s2})
	snap, _, _ := n.src.Fetch(context.Background())
	a.sw.Apply(snap)
	if r := a.sw.NotReady(); len(r) != 1 {
		t.Fatalf("decommissioned node: reasons %v", r)
	}
}

// Spec §6.4: a recursive request goes to every other member; a member that
// missed a store gets it later as an sn.data delivery.
func TestReplicateQueuesAndRedeliversFailedStores(t *testing.T) {
	n := newNet(t)
	ns := []*tnode{n.add(0), n.add(1), n.add(2), n.add(3)}
	assign := map[*tnode]uint64{}
	for _, tn := range ns {
		assign[tn] = 77
	}
	n.publish(assign)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.run(ctx, ns...)
	eventually(t, "all in swarm", func() bool {
		for _, tn := range ns {
			if tn.sw.NotReady() != nil {
				return false
			}
		}
		return true
	})

	entry, down := ns[0], ns[3]
	n.net.SetDown(down.node.Ed25519, true)
	m := msg(accountAt(123, 9), 1)
	replies := entry.sw.Replicate(ctx, "store", storeParams(m))
	if len(replies) != 3 {
		t.Fatalf("want 3 member replies, got %d", len(replies))
	}
	for _, r := range replies {
		isDown := r.Node.Ed25519 == down.node.Ed25519
		if isDown != (r.Err != nil) {
			t.Fatalf("member %s: err %v", r.Node, r.Err)
		}
		if !isDown && r.Reply.Status != 200 {
			t.Fatalf("member %s: status %d", r.Node, r.Reply.Status)
		}
	}
	for _, tn := range ns[1:3] {
		if !has(tn.store, m) {
			t.Fatalf("member %s did not store the forwarded message", tn.node)
		}
	}
	if q := entry.sw.Queued(); q[down.node.Ed25519Hex()] != 1 {
		t.Fatalf("queued = %v, want one entry for the down member", q)
	}
	n.net.SetDown(down.node.Ed25519, false)
	eventually(t, "down member receives the missed store", func() bool { return has(down.store, m) })
	eventually(t, "queue drains", func() bool { return len(entry.sw.Queued()) == 0 })
}

func TestDataReadyHandshakeRules(t *testing.T) {
	n := newNet(t)
	a, b, outsider := n.add(0), n.add(1), n.add(2)
	n.publish(map[*tnode]uint64{a: 5, b: 5, outsider: 1 << 62})
	snap, _, _ := n.src.Fetch(context.Background())
	a.sw.Apply(snap)
	ctx := context.Background()
	call := func(from *tnode, body []byte) peer.Reply {
		r, err := from.ep.Call(ctx, a.node, peer.CmdDataReady, body)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ok := call(b, bencode.MustMarshal(map[string]any{"#": Version, "t": 0}))
	v, err := bencode.Unmarshal(ok.Body)
	l, _ := v.([]any)
	if ok.Status != 200 || err != nil || len(l) != 2 || string(l[0].([]byte)) != "OK" {
		t.Fatalf("member data_ready: %d %q", ok.Status, ok.Body)
	}
	if d := l[1].(map[string]any); d["#"] != Version {
		t.Fatalf("reply version %v, want %d", d["#"], Version)
	}
	if r := call(outsider, bencode.MustMarshal(map[string]any{"#": Version, "t": 0})); string(r.Body) != "Swarm mismatch" {
		t.Fatalf("outsider: %d %q", r.Status, r.Body)
	}
	for _, bad := range [][]byte{[]byte("x"), bencode.MustMarshal([]any{1}), bencode.MustMarshal(map[string]any{"#": Version, "t": 7})} {
		if r := call(b, bad); r.Status != 400 || string(r.Body) != "Request payload malformed" {
			t.Fatalf("malformed %q: %d %q", bad, r.Status, r.Body)
		}
	}
	if r := call(b, []byte("\x02le")); r.Status != 400 {
		t.Fatal("unexpected")
	}
	if r, _ := b.ep.Call(ctx, a.node, peer.CmdData, []byte("\x02le")); r.Status != 400 {
		t.Fatalf("bad sn.data blob: status %d", r.Status)
	}
}

// Spec §6.6: a new member gets the swarm's messages (and only those) by a
// dump after the data_ready handshake.
func TestNewMemberReceivesDump(t *testing.T) {
	n := newNet(t)
	a, b, c := n.add(0), n.add(1), n.add(2)
	const sw, other = uint64(1) << 60, uint64(1)<<60 + 1<<62
	var ours, theirs []storage.Message
	for i := range 300 {
		m := msg(accountAt(sw+uint64(i), byte(i)), i)
		ours = append(ours, m)
		a.store.Store(context.Background(), m)
		b.store.Store(context.Background(), m)
	}
	for i := range 20 {
		m := msg(accountAt(other+uint64(i), byte(i)), 1000+i)
		theirs = append(theirs, m)
	}
	n.publish(map[*tnode]uint64{a: sw, b: sw})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.run(ctx, a, b)
	eventually(t, "a and b ready", func() bool { return a.sw.NotReady() == nil && b.sw.NotReady() == nil })

	n.publish(map[*tnode]uint64{a: sw, b: sw, c: sw})
	n.run(ctx, c)
	eventually(t, "c has every message of the swarm", func() bool {
		for _, m := range ours {
			if !has(c.store, m) {
				return false
			}
		}
		return true
	})
	for _, m := range theirs {
		if has(c.store, m) {
			t.Fatal("dump carried messages of another swarm")
		}
	}
}

// Spec §6.6: when a new swarm forms, messages that now map to it are
// pushed to all its members and dropped by the old swarm only after they
// acknowledged; until then the old swarm keeps serving those accounts.
func TestHandoverToNewSwarm(t *testing.T) {
	n := newNet(t)
	old := []*tnode{n.add(0), n.add(1), n.add(2)}
	fresh := []*tnode{n.add(3), n.add(4)}
	const s1, s2 = uint64(0), uint64(1) << 63
	var stay, move []storage.Message
	for i := range 200 {
		pos := uint64(i) << 56 // spread over the ring
		m := msg(accountAt(pos, byte(i)), i)
		if SwarmFor([]uint64{s1, s2}, pos) == s2 {
			move = append(move, m)
		} else {
			stay = append(stay, m)
		}
		for _, tn := range old {
			tn.store.Store(context.Background(), m)
		}
	}
	if len(move) == 0 || len(stay) == 0 {
		t.Fatal("test data does not straddle the new boundary")
	}
	assign := map[*tnode]uint64{}
	for _, tn := range old {
		assign[tn] = s1
	}
	n.publish(assign)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.run(ctx, old...)
	eventually(t, "old swarm ready", func() bool {
		for _, tn := range old {
			if tn.sw.NotReady() != nil {
				return false
			}
		}
		return true
	})

	// The new swarm forms while one of its members is unreachable.
	n.net.SetDown(fresh[1].node.Ed25519, true)
	for _, tn := range fresh {
		assign[tn] = s2
	}
	n.publish(assign)
	n.run(ctx, fresh...)
	eventually(t, "old members see two swarms", func() bool {
		for _, tn := range old {
			if _, _, ok := tn.sw.Space(); !ok {
				return false
			}
			if lo, up, _ := tn.sw.Space(); lo == up {
				return false
			}
		}
		return true
	})
	eventually(t, "reachable new member receives moved messages", func() bool {
		for _, m := range move {
			if !has(fresh[0].store, m) {
				return false
			}
		}
		return true
	})
	// Not acknowledged by every new owner: nothing dropped, still served.
	time.Sleep(100 * time.Millisecond)
	for _, tn := range old {
		if !has(tn.store, move[0]) {
			t.Fatal("old member dropped a message before every new owner acknowledged it")
		}
		if _, _, ours := tn.sw.Lookup(move[0].Owner); !ours {
			t.Fatal("old member stopped serving an account before its handover completed")
		}
		if pending, _ := tn.sw.Handover(); !pending {
			t.Fatal("handover reported complete with a new owner unreachable")
		}
	}
	n.net.SetDown(fresh[1].node.Ed25519, false)
	eventually(t, "handover completes and old members drop moved messages", func() bool {
		for _, tn := range old {
			if has(tn.store, move[0]) || has(tn.store, move[len(move)-1]) {
				return false
			}
			if pending, _ := tn.sw.Handover(); pending {
				return false
			}
		}
		return true
	})
	for _, m := range move {
		for _, tn := range fresh {
			if !has(tn.store, m) {
				t.Fatalf("moved message missing on new member %s", tn.node)
			}
		}
	}
	for _, m := range stay {
		for _, tn := range old {
			if !has(tn.store, m) {
				t.Fatal("old member dropped a message it still owns")
			}
		}
	}
	for _, tn := range old {
		if id, _, ours := tn.sw.Lookup(move[0].Owner); ours || id != s2 {
			t.Fatalf("after handover: lookup %x ours=%v, want a 421 to %x", id, ours, s2)
		}
	}
}

func TestReachability(t *testing.T) {
	n := newNet(t)
	a, good, liar, dead := n.add(0), n.add(1), n.add(2), n.add(3)
	pong := func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
		return peer.Reply{Status: 200, Body: []byte("pong")}
	}
	good.ep.Handle(peer.CmdPing, pong)
	liar.ep.Handle(peer.CmdPing, pong)
	serve := func(key [32]byte) *httptest.Server {
		s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != "/ping_test/v1" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("X-Oxen-Snode-Pubkey", base64.StdEncoding.EncodeToString(key[:]))
		}))
		t.Cleanup(s.Close)
		return s
	}
	point := func(tn *tnode, s *httptest.Server) {
		ap := netip.MustParseAddrPort(s.Listener.Addr().String())
		tn.node.IP, tn.node.HTTPSPort = ap.Addr(), ap.Port()
	}
	point(good, serve(good.node.Legacy))
	point(liar, serve(a.node.Legacy)) // answers with someone else's key
	n.net.SetDown(dead.node.Ed25519, true)
	dead.node.HTTPSPort = 1 // nothing listens there

	ctx := context.Background()
	if st := a.sw.TestPeer(ctx, good.node); !st.Reachable || !st.HTTPSOK || !st.PeerOK {
		t.Fatalf("good peer: %+v", st)
	}
	if st := a.sw.TestPeer(ctx, liar.node); st.Reachable || st.HTTPSOK || !st.PeerOK {
		t.Fatalf("peer with the wrong pubkey header: %+v", st)
	}
	if st := a.sw.TestPeer(ctx, dead.node); st.Reachable || st.HTTPSOK || st.PeerOK || st.Error == "" {
		t.Fatalf("dead peer: %+v", st)
	}

	// The background tests record results, back off failing peers and
	// report each result (oxend's report_peer_status).
	var repMu sync.Mutex
	reports := map[string]bool{}
	a.sw.cfg.ReportPeer = func(n registry.Node, reachable bool) {
		repMu.Lock()
		reports[n.Ed25519Hex()] = reachable
		repMu.Unlock()
	}
	a.sw.reach.cfg.Tick, a.sw.reach.cfg.Every = 5*time.Millisecond, 10*time.Millisecond
	a.sw.reach.nextRandom = time.Time{}
	n.publish(map[*tnode]uint64{a: 1, good: 1, liar: 1, dead: 1})
	snap, _, _ := n.src.Fetch(ctx)
	a.sw.Apply(snap)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.sw.reach.run(rctx)
	eventually(t, "every peer tested", func() bool {
		for _, st := range a.sw.Reachability() {
			if !st.Tested {
				return false
			}
		}
		return len(a.sw.Reachability()) == 3
	})
	for _, st := range a.sw.Reachability() {
		switch st.Ed25519 {
		case good.node.Ed25519Hex():
			if !st.Reachable || st.Failures != 0 {
				t.Fatalf("good: %+v", st)
			}
		default:
			if st.Reachable || st.Failures == 0 || !st.NextTest.After(st.LastTest) {
				t.Fatalf("failing peer without backoff: %+v", st)
			}
		}
	}
	eventually(t, "every result reported", func() bool {
		repMu.Lock()
		defer repMu.Unlock()
		return len(reports) == 3
	})
	repMu.Lock()
	defer repMu.Unlock()
	if !reports[good.node.Ed25519Hex()] || reports[liar.node.Ed25519Hex()] || reports[dead.node.Ed25519Hex()] {
		t.Errorf("reports %v", reports)
	}
}

func TestDecodeKeyForms(t *testing.T) {
	var k [32]byte
	for i := range k {
		k[i] = byte(i * 7)
	}
	for name, s := range map[string]string{
		"base64": base64.StdEncoding.EncodeToString(k[:]),
		"hex":    fmt.Sprintf("%x", k),
		"b32z":   identity.Base32z(k[:]),
		"raw":    string(k[:]),
	} {
		if got, ok := decodeKey(s); !ok || got != k {
			t.Errorf("%s: decoded %x ok=%v", name, got, ok)
		}
	}
	if _, ok := decodeKey("short"); ok {
		t.Error("garbage decoded")
	}
}

func TestCursorResumeRanges(t *testing.T) {
	at := func(p uint64) storage.Message { return storage.Message{Owner: accountAt(p, 0)} }
	// Normal range (100, 1000]: batches end at 300, 600, 900.
	c := newCursor(100, 1000)
	for _, p := range []uint64{101, 200, 300, 300, 450, 600, 700, 900} {
		c.see(at(p))
	}
	if _, _, ok := c.acked(1, 600); ok {
		t.Fatal("resume point moved past an unacknowledged batch")
	}
	lo, hi, ok := c.acked(0, 300)
	if !ok || lo != 599 || hi != 1000 {
		t.Fatalf("after batches 0 and 1: (%d, %d] ok=%v, want (599, 1000]", lo, hi, ok)
	}
	// Wrapping range (2^64-10, 50]: a batch ending after the wrap.
	w := newCursor(1<<64-10, 50)
	for _, p := range []uint64{1<<64 - 5, 1<<64 - 1, 0, 20} {
		w.see(at(p))
	}
	if lo, hi, ok := w.acked(0, 1<<64-1); !ok || lo != 1<<64-2 || hi != 50 {
		t.Fatalf("wrap, before the wrap: (%d, %d] ok=%v", lo, hi, ok)
	}
	if lo, hi, ok := w.acked(1, 20); !ok || lo != 19 || hi != 50 {
		t.Fatalf("wrap, after the wrap: (%d, %d] ok=%v", lo, hi, ok)
	}
	// Whole ring.
	r := newCursor(7, 7)
	r.see(at(5))
	r.see(at(1 << 40))
	if lo, hi, ok := r.acked(0, 1<<40); !ok || lo != 1<<40-1 || hi != 1<<64-1 {
		t.Fatalf("whole ring: (%d, %d] ok=%v", lo, hi, ok)
	}
	// A walk out of order gives no resume point.
	o := newCursor(0, 1000)
	o.see(at(500))
	o.see(at(400))
	if _, _, ok := o.acked(0, 400); ok {
		t.Fatal("resume point from an unordered walk")
	}
}

// A dump interrupted by a failed batch resumes where the member's
// acknowledgements stopped instead of starting over.
func TestDumpResumesAfterFailure(t *testing.T) {
	// One batch in flight at a time makes the duplicates exact: batches 0
	// and 1 land, 2 fails, the retry starts at 1's last position.
	defer func(w int) { dumpWindow = w }(dumpWindow)
	dumpWindow = 1
	n := newNet(t)
	a, c := n.add(0), n.add(1)
	const sw = uint64(1) << 50
	const count = 4000
	var msgs []storage.Message
	for i := range count {
		m := msg(accountAt(sw+uint64(i)*1000, byte(i)), i)
		m.Data = append(m.Data, make([]byte, 900)...)
		m.Hash = storage.MessageHash(m.Owner, 0, m.Data)
		msgs = append(msgs, m)
	}
	a.store.StoreBatch(context.Background(), msgs)
	var mu sync.Mutex
	calls, received := 0, 0
	c.ep.Handle(peer.CmdData, func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
		mu.Lock()
		calls++
		fail := calls == 3
		mu.Unlock()
		if fail {
			return peer.Reply{Status: 500, Body: []byte("disk hiccup")}
		}
		r := c.sw.HandleData(ctx, from, body)
		ms, _ := DecodeBlob(body)
		mu.Lock()
		received += len(ms)
		mu.Unlock()
		return r
	})
	c.ep.Handle(peer.CmdDataReady, func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
		return peer.Reply{Status: 200, Body: bencode.MustMarshal([]any{"OK"})}
	})
	n.publish(map[*tnode]uint64{a: sw})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.run(ctx, a)
	eventually(t, "a ready", func() bool { return a.sw.NotReady() == nil })
	n.publish(map[*tnode]uint64{a: sw, c: sw})
	eventually(t, "c has the whole dump", func() bool { return c.store.Stats().Messages == count })
	mu.Lock()
	defer mu.Unlock()
	perBatch := DumpBatchBytes / EncodedSize(msgs[0])
	if calls < 4 {
		t.Fatalf("%d data calls: the failure and retry never happened", calls)
	}
	// Starting over would resend two whole batches; resuming resends only
	// the message at the resume position.
	if received != count+1 {
		t.Fatalf("received %d messages for a %d-message dump (batch ≈ %d): not resumed", received, count, perBatch)
	}
	t.Logf("%d messages received in %d calls for %d stored (batch ≈ %d)", received, calls, count, perBatch)
}

// While a member has a backlog, later requests queue behind it (no live
// call that could overtake), and the member receives everything in order.
func TestQueuedRequestsKeepOrder(t *testing.T) {
	n := newNet(t)
	a, b := n.add(0), n.add(1)
	var mu sync.Mutex
	var seen []string
	b.ep.Handle(peer.CmdData, func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
		ms, _ := DecodeBlob(body)
		mu.Lock()
		for range ms {
			seen = append(seen, "data")
		}
		mu.Unlock()
		return b.sw.HandleData(ctx, from, body)
	})
	b.ep.Handle(peer.CmdStorageCC, func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
		v, _ := bencode.Unmarshal(body)
		l, _ := v.([]any)
		mu.Lock()
		seen = append(seen, "cc:"+string(l[0].([]byte)))
		mu.Unlock()
		return peer.Reply{Status: 200, Body: bencode.MustMarshal(map[string]any{})}
	})
	n.publish(map[*tnode]uint64{a: 9, b: 9})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snap, _, _ := n.src.Fetch(ctx)
	a.sw.Apply(snap)
	b.sw.Apply(snap)

	n.net.SetDown(b.node.Ed25519, true)
	m := msg(accountAt(9, 1), 1)
	if r := a.sw.Replicate(ctx, "store", storeParams(m)); r[0].Err == nil {
		t.Fatal("store to a down member did not fail")
	}
	n.net.SetDown(b.node.Ed25519, false)
	del := bencode.MustMarshal(map[string]any{"pubkey": m.Owner.Bytes(), "messages": []string{m.Hash}})
	r := a.sw.Replicate(ctx, "delete", del)
	if r[0].Err == nil {
		t.Fatal("delete overtook the queued store with a live call")
	}
	if q := a.sw.Queued()[b.node.Ed25519Hex()]; q != 2 {
		t.Fatalf("queue for b = %d, want 2", q)
	}
	go a.sw.maintain(ctx)
	eventually(t, "queue drains", func() bool { return len(a.sw.Queued()) == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != "data" || seen[1] != "cc:delete" {
		t.Fatalf("member received %v, want [data cc:delete]", seen)
	}
}

func TestCopySourcesAreTheNextTwoMembers(t *testing.T) {
	var ms []registry.Node
	for i := range 5 {
		var n registry.Node
		n.Ed25519[0] = byte(10 * (i + 1))
		ms = append(ms, n)
	}
	got := copySources(ms, ms[3].Ed25519)
	if len(got) != 2 || got[0].Ed25519 != ms[4].Ed25519 || got[1].Ed25519 != ms[0].Ed25519 {
		t.Fatalf("sources of member 3: %v", got)
	}
	if got := copySources(ms[:2], ms[0].Ed25519); len(got) != 1 || got[0].Ed25519 != ms[1].Ed25519 {
		t.Fatalf("two-member swarm: %v", got)
	}
	if got := copySources(ms, [32]byte{1}); got != nil {
		t.Fatal("sources for a non-member")
	}
}

// A node the registry takes out of every swarm hands all its messages to
// the swarms that own them and keeps none.
func TestDecommissionedNodeHandsOverEverything(t *testing.T) {
	n := newNet(t)
	a, b, c := n.add(0), n.add(1), n.add(2)
	const s1, s2 = uint64(0), uint64(1) << 63
	var msgs []storage.Message
	for i := range 100 {
		m := msg(accountAt(uint64(i)<<57, byte(i)), i)
		msgs = append(msgs, m)
		a.store.Store(context.Background(), m)
	}
	n.publish(map[*tnode]uint64{a: s1, b: s1, c: s2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.run(ctx, a, b, c)
	eventually(t, "ready", func() bool { return a.sw.NotReady() == nil && c.sw.NotReady() == nil })
	n.publish(map[*tnode]uint64{a: registry.NoSwarm, b: s1, c: s2})
	eventually(t, "a hands everything over", func() bool { return a.store.Stats().Messages == 0 })
	ids := []uint64{s1, s2}
	for _, m := range msgs {
		owner := c
		if SwarmFor(ids, storage.Position(m.Owner.Key)) == s1 {
			owner = b
		}
		if !has(owner.store, m) {
			t.Fatalf("message for swarm %x missing on its member after the handover", SwarmFor(ids, storage.Position(m.Owner.Key)))
		}
	}
	if r := a.sw.NotReady(); len(r) == 0 {
		t.Fatal("a decommissioned node reports ready")
	}
}
