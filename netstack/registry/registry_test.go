package registry

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snodebox/snodebox/netstack/identity"
)

func testKeys(t testing.TB, i int) *identity.Keys {
	t.Helper()
	seed := sha256.Sum256([]byte(fmt.Sprintf("registry-test-%d", i)))
	k, err := identity.FromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testNode(k *identity.Keys, port uint16) Node {
	var n Node
	copy(n.Ed25519[:], k.Ed25519Pub)
	n.Legacy = n.Ed25519
	n.X25519 = k.X25519Pub
	n.IP = netip.MustParseAddr("127.0.0.1")
	n.HTTPSPort = port
	n.Version = [3]uint16{2, 11, 3}
	return n
}

// fakeOxend answers get_service_nodes like oxend: full list, or
// unchanged=true when poll_block_hash matches.
type fakeOxend struct {
	mu     sync.Mutex
	hash   string
	states []ServiceNodeState
	calls  []map[string]any
}

func (f *fakeOxend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/json_rpc" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req struct {
		JSONRPC string         `json:"jsonrpc"`
		Method  string         `json:"method"`
		Params  map[string]any `json:"params"`
	}
	json.Unmarshal(body, &req)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req.Params)
	if req.JSONRPC != "2.0" || req.Method != "get_service_nodes" {
		w.Write([]byte(`{"jsonrpc":"2.0","id":0,"error":{"code":-32601,"message":"Method not found"}}`))
		return
	}
	res := map[string]any{"height": 1000, "block_hash": f.hash, "hardfork": 19, "snode_revision": 6, "status": "OK"}
	if h, _ := req.Params["poll_block_hash"].(string); h == f.hash {
		res["unchanged"] = true
	} else {
		res["service_node_states"] = f.states
	}
	json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": 0, "result": res})
}

func TestOxendSourcePollsAndSkipsUnchanged(t *testing.T) {
	k1, k2 := testKeys(t, 1), testKeys(t, 2)
	n1, n2 := testNode(k1, 22021), testNode(k2, 22022)
	n1.SwarmID, n2.SwarmID = 7, NoSwarm
	unfunded := StateFromNode(testNode(testKeys(t, 3), 1))
	no := false
	unfunded.Funded = &no
	nokeys := StateFromNode(testNode(testKeys(t, 4), 1))
	nokeys.PubkeyX25519 = ""
	f := &fakeOxend{hash: "aa", states: []ServiceNodeState{StateFromNode(n1), StateFromNode(n2), unfunded, nokeys}}
	srv := httptest.NewServer(f)
	defer srv.Close()

	o := NewOxend(srv.URL, nil)
	if o.Name() != "oxend:"+srv.URL {
		t.Fatalf("name %q", o.Name())
	}
	ctx := context.Background()
	snap, changed, err := o.Fetch(ctx)
	if err != nil || !changed {
		t.Fatalf("first fetch: changed=%v err=%v", changed, err)
	}
	if len(snap.Nodes) != 2 {
		t.Fatalf("want 2 nodes (unfunded and keyless skipped), got %d", len(snap.Nodes))
	}
	if snap.Nodes[0] != n1 || snap.Nodes[1] != n2 {
		t.Fatalf("nodes = %+v, want %+v and %+v", snap.Nodes[0], n1, n2)
	}
	if snap.Height != 1000 || snap.BlockHash != "aa" || snap.Hardfork != [2]int{19, 6} {
		t.Fatalf("snapshot header %d %q %v", snap.Height, snap.BlockHash, snap.Hardfork)
	}
	// The first call has no poll hash, asks for the §6.3 fields and
	// includes inactive nodes.
	first := f.calls[0]
	if _, has := first["poll_block_hash"]; has {
		t.Fatal("first call sent poll_block_hash")
	}
	if first["active_only"] != false {
		t.Fatalf("active_only = %v", first["active_only"])
	}
	fields, _ := first["fields"].(map[string]any)
	for _, name := range []string{"swarm_id", "storage_port", "public_ip", "pubkey_ed25519", "pubkey_x25519", "block_hash"} {
		if fields[name] != true {
			t.Fatalf("field %s not requested: %v", name, fields)
		}
	}

	snap2, changed, err := o.Fetch(ctx)
	if err != nil || changed {
		t.Fatalf("second fetch: changed=%v err=%v", changed, err)
	}
	if f.calls[1]["poll_block_hash"] != "aa" {
		t.Fatalf("second call poll_block_hash = %v", f.calls[1]["poll_block_hash"])
	}
	if len(snap2.Nodes) != 2 {
		t.Fatal("unchanged answer lost the previous snapshot")
	}

	f.mu.Lock()
	f.hash = "bb"
	f.states = f.states[:1]
	f.mu.Unlock()
	snap3, changed, err := o.Fetch(ctx)
	if err != nil || !changed || len(snap3.Nodes) != 1 || snap3.BlockHash != "bb" {
		t.Fatalf("after a new block: changed=%v err=%v nodes=%d", changed, err, len(snap3.Nodes))
	}
}

func TestOxendSourceErrors(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"http error": func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) },
		"rpc error": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"jsonrpc":"2.0","id":0,"error":{"code":-1,"message":"not ready"}}`))
		},
		"bad json": func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{`)) },
		"bad key": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"result":{"block_hash":"x","service_node_states":[{"pubkey_ed25519":"zz","pubkey_x25519":"00"}]}}`))
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			if _, changed, err := NewOxend(srv.URL, nil).Fetch(context.Background()); err == nil || changed {
				t.Fatalf("changed=%v err=%v, want an error", changed, err)
			}
		})
	}
}

func keysN(n int) [][32]byte {
	out := make([][32]byte, n)
	for i := range out {
		out[i] = sha256.Sum256([]byte(fmt.Sprintf("node-%d", i)))
	}
	return out
}

func sizes(a map[[32]byte]uint64) map[uint64]int {
	s := map[uint64]int{}
	for _, id := range a {
		s[id]++
	}
	return s
}

func checkSizes(t *testing.T, a map[[32]byte]uint64, n int) {
	t.Helper()
	s := sizes(a)
	lo, hi := n, 0
	for id, c := range s {
		if id == NoSwarm {
			t.Fatal("a live node got NoSwarm")
		}
		lo, hi = min(lo, c), max(hi, c)
	}
	if n >= MinSwarmSize && lo < MinSwarmSize {
		t.Fatalf("%d nodes: swarm of %d < minimum %d (sizes %v)", n, lo, MinSwarmSize, s)
	}
	if hi-lo > 2 {
		t.Fatalf("%d nodes: sizes differ by %d (sizes %v)", n, hi-lo, s)
	}
	if n >= MinSwarmSize && len(s) > 1 && float64(n)/float64(len(s)) > growAbove+0.001 {
		t.Fatalf("%d nodes in %d swarms: average above %d", n, len(s), growAbove)
	}
	if n < 2*MinSwarmSize && len(s) != 1 {
		t.Fatalf("%d nodes must be one swarm, got %v", n, s)
	}
}

func moved(prev, next map[[32]byte]uint64) int {
	m := 0
	for k, id := range next {
		if p, ok := prev[k]; ok && p != id {
			m++
		}
	}
	return m
}

func TestAssignSwarmsDeterministic(t *testing.T) {
	keys := keysN(40)
	a := AssignSwarms(nil, keys)
	rev := make([][32]byte, len(keys))
	for i, k := range keys {
		rev[len(keys)-1-i] = k
	}
	b := AssignSwarms(nil, rev)
	for k, id := range a {
		if b[k] != id {
			t.Fatal("assignment depends on input order")
		}
	}
	c := AssignSwarms(a, keys)
	for k, id := range a {
		if c[k] != id {
			t.Fatal("re-running on its own output moved a node")
		}
	}
	checkSizes(t, a, 40)
}

// Growing one node at a time: sizes stay within bounds, the swarm count
// rises by one at a time, ids already in use never change, and a node moves
// only when a new swarm forms (and then at most what the new swarm needs).
func TestAssignSwarmsGrowth(t *testing.T) {
	keys := keysN(120)
	var prev map[[32]byte]uint64
	for n := 1; n <= len(keys); n++ {
		next := AssignSwarms(prev, keys[:n])
		checkSizes(t, next, n)
		before, after := len(sizes(prev)), len(sizes(next))
		mv := moved(prev, next)
		switch {
		case after == before && mv != 0:
			t.Fatalf("n=%d: swarm count unchanged but %d nodes moved", n, mv)
		case after == before+1:
			if need := n / after; mv > need {
				t.Fatalf("n=%d: new swarm needs ≤%d nodes, %d moved", n, need, mv)
			}
			for id := range sizes(prev) {
				if sizes(next)[id] == 0 {
					t.Fatalf("n=%d: existing swarm %x vanished on growth", n, id)
				}
			}
		case after != before && n > 1:
			t.Fatalf("n=%d: swarm count jumped %d → %d", n, before, after)
		}
		prev = next
	}
	if len(sizes(prev)) < 10 {
		t.Fatalf("120 nodes in %d swarms", len(sizes(prev)))
	}
}

// Random joins and departures: sizes always within bounds; a departure that
// leaves every swarm at or above the minimum moves nobody.
func TestAssignSwarmsChurnMovesFew(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	all := keysN(200)
	live := map[[32]byte]bool{}
	for _, k := range all[:50] {
		live[k] = true
	}
	list := func() [][32]byte {
		var l [][32]byte
		for k := range live {
			l = append(l, k)
		}
		return l
	}
	prev := AssignSwarms(nil, list())
	for step := 0; step < 400; step++ {
		k := all[rng.IntN(len(all))]
		leaving := live[k]
		live[k] = !leaving
		if !live[k] {
			delete(live, k)
		}
		next := AssignSwarms(prev, list())
		checkSizes(t, next, len(live))
		mv := moved(prev, next)
		if len(sizes(next)) == len(sizes(prev)) {
			if !leaving && mv != 0 {
				t.Fatalf("step %d: a join moved %d nodes", step, mv)
			}
			if leaving && mv > 1 {
				t.Fatalf("step %d: a departure moved %d nodes", step, mv)
			}
			if leaving && mv == 1 {
				// Sizes right after the departure, before any rebalancing.
				lo, hi := 1<<30, 0
				for id, c := range sizes(prev) {
					if id == prev[k] {
						c--
					}
					lo, hi = min(lo, c), max(hi, c)
				}
				if lo >= MinSwarmSize && hi-lo <= 2 {
					t.Fatalf("step %d: a departure that broke no bound moved a node", step)
				}
			}
		}
		prev = next
	}
}

func TestSwarmIDAtSpreadsOverTheRing(t *testing.T) {
	want := []uint64{0, 1 << 63, 1 << 62, 3 << 62, 1 << 61}
	for i, w := range want {
		if got := SwarmIDAt(i); got != w {
			t.Fatalf("SwarmIDAt(%d) = %x, want %x", i, got, w)
		}
	}
}

func TestRecordSignatureAndFreshness(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	g := NewDevnetRegistry(DevnetOptions{Now: func() time.Time { return now }, TTL: 10 * time.Second})
	k := testKeys(t, 1)
	n := testNode(k, 30001)
	good := SignRecord(k, Record{Node: n, Timestamp: now.UnixMilli()})
	if err := g.Announce(good); err != nil {
		t.Fatalf("good record rejected: %v", err)
	}
	if err := g.Announce(good); err == nil {
		t.Fatal("replayed record accepted")
	}
	other := testKeys(t, 2)
	forged := SignRecord(other, Record{Node: n, Timestamp: now.UnixMilli() + 1})
	if err := g.Announce(forged); err == nil {
		t.Fatal("record signed by another key accepted")
	}
	tampered := SignRecord(k, Record{Node: n, Timestamp: now.UnixMilli() + 2})
	tampered.Record = tampered.Record[:len(tampered.Record)-4] + "3265" // change the tail
	if err := g.Announce(tampered); err == nil {
		t.Fatal("tampered record accepted")
	}
	wrongX := n
	wrongX.X25519[0] ^= 1
	if err := g.Announce(SignRecord(k, Record{Node: wrongX, Timestamp: now.UnixMilli() + 3})); err == nil {
		t.Fatal("record with a foreign x25519 key accepted")
	}
	if err := g.Announce(SignRecord(k, Record{Node: n, Timestamp: now.Add(-2 * time.Minute).UnixMilli()})); err == nil {
		t.Fatal("two-minute-old record accepted")
	}
	if err := g.Announce(SignRecord(k, Record{Node: n, Timestamp: now.Add(2 * time.Minute).UnixMilli()})); err == nil {
		t.Fatal("record from the future accepted")
	}
	snap := g.Snapshot()
	if len(snap.Nodes) != 1 || snap.Nodes[0].Ed25519 != n.Ed25519 || snap.Nodes[0].SwarmID == NoSwarm {
		t.Fatalf("snapshot %+v", snap.Nodes)
	}
	h1 := snap.BlockHash
	now = now.Add(11 * time.Second)
	snap = g.Snapshot()
	if len(snap.Nodes) != 0 {
		t.Fatal("stale node not expired")
	}
	if snap.BlockHash == h1 {
		t.Fatal("block hash did not change when the node expired")
	}
}

// A devnet registry over HTTP: nodes announce through DevnetSource, read
// the network back with swarm ids, and a Session-Desktop-style
// get_n_service_nodes seed call sees them.
func TestDevnetRegistryOverHTTP(t *testing.T) {
	g := NewDevnetRegistry(DevnetOptions{})
	srv := httptest.NewTLSServer(g)
	defer srv.Close()
	ctx := context.Background()
	var srcs []*DevnetSource
	for i := range 12 {
		k := testKeys(t, 100+i)
		srcs = append(srcs, NewDevnetSource(srv.URL, k, testNode(k, uint16(31000+i)), nil))
	}
	for _, s := range srcs {
		if err := s.Announce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	snap, changed, err := srcs[0].Fetch(ctx)
	if err != nil || !changed {
		t.Fatalf("fetch: changed=%v err=%v", changed, err)
	}
	if len(snap.Nodes) != 12 {
		t.Fatalf("want 12 nodes, got %d", len(snap.Nodes))
	}
	ids := map[uint64]int{}
	for _, n := range snap.Nodes {
		ids[n.SwarmID]++
		if n.HTTPSPort < 31000 || !n.IP.IsLoopback() {
			t.Fatalf("node contact lost: %v", n)
		}
	}
	if len(ids) != 2 || ids[NoSwarm] != 0 {
		t.Fatalf("12 nodes should form 2 swarms, got %v", ids)
	}
	// Unchanged network: poll hash answers unchanged.
	if _, changed, err := srcs[0].Fetch(ctx); err != nil || changed {
		t.Fatalf("second fetch changed=%v err=%v", changed, err)
	}
	// Height and block hash move on a membership change.
	k := testKeys(t, 999)
	late := NewDevnetSource(srv.URL, k, testNode(k, 32000), nil)
	if err := late.Announce(ctx); err != nil {
		t.Fatal(err)
	}
	snap2, changed, err := srcs[0].Fetch(ctx)
	if err != nil || !changed || snap2.Height <= snap.Height || snap2.BlockHash == snap.BlockHash {
		t.Fatalf("after join: changed=%v err=%v height %d→%d", changed, err, snap.Height, snap2.Height)
	}

	var res GetServiceNodesResult
	client := InsecureClient(5 * time.Second)
	params := map[string]any{"active_only": true, "fields": map[string]bool{"public_ip": true, "storage_port": true, "pubkey_x25519": true, "pubkey_ed25519": true, "storage_server_version": true}}
	if err := CallJSONRPC(ctx, client, srv.URL, "get_n_service_nodes", params, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.ServiceNodeStates) != 13 {
		t.Fatalf("get_n_service_nodes: %d nodes", len(res.ServiceNodeStates))
	}
	st := res.ServiceNodeStates[0]
	if st.PublicIP != "127.0.0.1" || st.StoragePort == nil || st.PubkeyEd25519 == "" || st.SwarmID != nil {
		t.Fatalf("fields filter: %+v", st)
	}
	var bad struct{}
	if err := CallJSONRPC(ctx, client, srv.URL, "get_block_hash", map[string]any{}, &bad); err == nil {
		t.Fatal("unknown method answered without error")
	}
	// A bad announcement is refused with 403.
	resp, err := client.Post(srv.URL+AnnouncePath, "application/json", strings.NewReader(`{"record":"00","signature":"00"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bad announce: HTTP %d", resp.StatusCode)
	}
}

// A registry restarted with its saved state gives every node its old swarm
// back, and answers no node list until they had time to re-announce.
func TestDevnetRegistryRestartKeepsSwarms(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	clock := func() time.Time { return now }
	path := filepath.Join(t.TempDir(), "registry.json")
	g := NewDevnetRegistry(DevnetOptions{Now: clock, StatePath: path})
	var keys []*identity.Keys
	for i := range 23 {
		keys = append(keys, testKeys(t, 300+i))
	}
	announceAll := func(g *DevnetRegistry) {
		for i, k := range keys {
			if err := g.Announce(SignRecord(k, Record{Node: testNode(k, uint16(33000+i)), Timestamp: now.UnixMilli()})); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Join in an order that differs from key order, as a real devnet does.
	for i := len(keys) - 1; i >= 0; i-- {
		k := keys[i]
		if err := g.Announce(SignRecord(k, Record{Node: testNode(k, uint16(33000+i)), Timestamp: now.UnixMilli()})); err != nil {
			t.Fatal(err)
		}
	}
	before := map[[32]byte]uint64{}
	for _, n := range g.Snapshot().Nodes {
		before[n.Ed25519] = n.SwarmID
	}
	if len(sizes(before)) < 2 {
		t.Fatalf("23 nodes in %d swarms", len(sizes(before)))
	}

	now = now.Add(time.Second)
	g2 := NewDevnetRegistry(DevnetOptions{Now: clock, StatePath: path, WarmUp: 5 * time.Second})
	srv := httptest.NewServer(g2)
	defer srv.Close()
	var res GetServiceNodesResult
	if err := CallJSONRPC(context.Background(), http.DefaultClient, srv.URL, "get_service_nodes", map[string]any{}, &res); err == nil {
		t.Fatal("restarted registry answered during warm-up")
	}
	announceAll(g2)
	now = now.Add(6 * time.Second)
	if err := CallJSONRPC(context.Background(), http.DefaultClient, srv.URL, "get_service_nodes", map[string]any{}, &res); err != nil {
		t.Fatal(err)
	}
	after := map[[32]byte]uint64{}
	for _, st := range res.ServiceNodeStates {
		n, ok, err := NodeFromState(st)
		if err != nil || !ok {
			t.Fatal(err)
		}
		after[n.Ed25519] = n.SwarmID
	}
	if moved(before, after) != 0 || len(after) != len(before) {
		t.Fatalf("%d of %d nodes changed swarm across a registry restart", moved(before, after), len(before))
	}
}
