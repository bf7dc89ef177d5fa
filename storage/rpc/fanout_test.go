package rpc

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// storageCC builds the sn.storage_cc body [method, params] the way
// storage/swarm does: the params dict embedded in the list.
func storageCC(method string, bt []byte) []byte {
	b := []byte("l" + strconv.Itoa(len(method)) + ":" + method)
	b = append(b, bt...)
	return append(b, 'e')
}

// swarmOf3 wires three nodes into one swarm: the entry node's Replicate
// delivers to the others' HandleStorageCC, as the peer transport would.
func swarmOf3(t *testing.T) (entry *testNode, others []*testNode) {
	t.Helper()
	nodes := []*testNode{newTestNode(t, 1), newTestNode(t, 2), newTestNode(t, 3)}
	var members []registry.Node
	for _, n := range nodes {
		members = append(members, n.swarm.self)
	}
	for _, n := range nodes {
		n.swarm.members = members
	}
	entry = nodes[0]
	entry.swarm.replicate = func(ctx context.Context, method string, bt []byte) []MemberReply {
		var out []MemberReply
		for _, o := range nodes[1:] {
			rep := o.srv.HandleStorageCC(ctx, o.keys.Ed25519Pub, storageCC(method, bt))
			out = append(out, MemberReply{Node: o.swarm.self, Reply: rep})
		}
		return out
	}
	return entry, nodes[1:]
}

// §6.4: a recursive request reaches every member; each answers with its own
// signed entry under its Ed25519 key; store at every member is the same.
func TestSwarmReplication(t *testing.T) {
	entry, others := swarmOf3(t)
	u := sessionSigner(t, 7)
	status, body, raw := entry.do(t, "store", u.Store(rpcclient.StoreArgs{Namespace: 3, Data: []byte("replicated"), Timestamp: testNow, TTL: day}))
	if status != 200 {
		t.Fatalf("store: %d %s", status, raw)
	}
	hash := body["hash"].(string)
	sw := body["swarm"].(map[string]any)
	if len(sw) != 3 {
		t.Fatalf("swarm has %d entries, want 3: %s", len(sw), raw)
	}
	for _, n := range append([]*testNode{entry}, others...) {
		e := sw[n.keys.Ed25519Hex()].(map[string]any)
		if e["hash"] != hash {
			t.Fatalf("member %s entry %v", n.keys.Ed25519Hex()[:8], e)
		}
		checkNodeSig(t, n.keys, e["signature"], hash)
		msgs, _, err := n.store.Retrieve(context.Background(), u.Account, 3, "", 0, 0)
		if err != nil || len(msgs) != 1 || msgs[0].Hash != hash {
			t.Fatalf("member %s holds %v (%v)", n.keys.Ed25519Hex()[:8], msgs, err)
		}
		if _, hasT := e["t"]; hasT != (n == entry) {
			t.Fatalf("deprecated t only in the entry node's entry: %v", e)
		}
	}
	// a re-store: the entry's own entry says true, forwarded ones 1 (§16)
	_, body, _ = entry.do(t, "store", u.Store(rpcclient.StoreArgs{Namespace: 3, Data: []byte("replicated"), Timestamp: testNow, TTL: day}))
	sw = body["swarm"].(map[string]any)
	if sw[entry.keys.Ed25519Hex()].(map[string]any)["already"] != true {
		t.Fatalf("entry node already: %v", sw)
	}
	for _, o := range others {
		if sw[o.keys.Ed25519Hex()].(map[string]any)["already"] != float64(1) {
			t.Fatalf("member already: %v", sw[o.keys.Ed25519Hex()])
		}
	}
	// delete_all replicates and every member signs what it deleted
	status, body, raw = entry.do(t, "delete_all", u.DeleteAll(storage.NSFilter{All: true}, testNow))
	if status != 200 {
		t.Fatalf("delete_all: %d %s", status, raw)
	}
	sw = body["swarm"].(map[string]any)
	for _, n := range append([]*testNode{entry}, others...) {
		e := sw[n.keys.Ed25519Hex()].(map[string]any)
		checkNodeSig(t, n.keys, e["signature"], u.Pubkey()+strconv.FormatInt(testNow, 10)+hash)
		if st := n.store.Stats(); st.Messages != 0 {
			t.Fatalf("member still holds %d messages", st.Messages)
		}
	}
	// non-recursive methods are not forwarded
	before := len(entry.swarm.forwarded)
	entry.do(t, "retrieve", u.Retrieve(rpcclient.RetrieveArgs{Timestamp: testNow}))
	if len(entry.swarm.forwarded) != before {
		t.Fatalf("retrieve was forwarded")
	}
}

// §6.4 failure entries and the 200/500 rule.
func TestSwarmFailures(t *testing.T) {
	entry := newTestNode(t, 1)
	u := sessionSigner(t, 7)
	peers := []registry.Node{nodeFor(seedKeys(t, 2), 1), nodeFor(seedKeys(t, 3), 2), nodeFor(seedKeys(t, 4), 3), nodeFor(seedKeys(t, 5), 4)}
	entry.swarm.replicate = func(ctx context.Context, method string, bt []byte) []MemberReply {
		return []MemberReply{
			{Node: peers[0], Err: fmt.Errorf("call: %w", peer.ErrTimeout)},
			{Node: peers[1], Reply: peer.Reply{Status: 406, Body: []byte("Timestamp error: check your clock")}},
			{Node: peers[2], Reply: peer.Reply{Status: 200, Body: []byte("not bencode")}},
			{Node: peers[3], Err: fmt.Errorf("dial: %w", peer.ErrUnreachable)},
		}
	}
	status, body, raw := entry.do(t, "store", rpcclient.StoreUnsigned(u.Pubkey(), rpcclient.StoreArgs{Data: []byte("x"), Timestamp: testNow, TTL: day}))
	if status != 200 {
		t.Fatalf("one member succeeded, status %d: %s", status, raw)
	}
	sw := body["swarm"].(map[string]any)
	want := map[string]string{
		peers[0].Ed25519Hex(): `{"failed":true,"timeout":true}`,
		peers[1].Ed25519Hex(): `{"code":406,"failed":true,"reason":"Timestamp error: check your clock"}`,
		peers[2].Ed25519Hex(): `{"bad_peer_response":true,"failed":true}`,
		peers[3].Ed25519Hex(): `{"failed":true,"timeout":true}`,
	}
	for k, w := range want {
		if got := jsonOf(t, sw[k]); got != w {
			t.Errorf("entry %s = %s, want %s", k[:8], got, w)
		}
	}
	// every entry failed (the local store is full too) → 500
	entry.srv.cfg.Store = fullStore{entry.store}
	status, _, raw = entry.do(t, "store", rpcclient.StoreUnsigned(u.Pubkey(), rpcclient.StoreArgs{Data: []byte("y"), Timestamp: testNow, TTL: day}))
	if status != http.StatusInternalServerError {
		t.Fatalf("all failed: %d %s", status, raw)
	}
}

// fullStore is a store whose database is full.
type fullStore struct{ inner storage.Store }

func (fullStore) Store(context.Context, storage.Message) (bool, int64, error) {
	return false, 0, storage.ErrFull
}

func (f fullStore) StoreBatch(ctx context.Context, ms []storage.Message) (int, error) {
	return 0, storage.ErrFull
}
func (f fullStore) Retrieve(ctx context.Context, o storage.Account, ns storage.Namespace, lh string, c int, s int64) ([]storage.Message, bool, error) {
	return f.inner.Retrieve(ctx, o, ns, lh, c, s)
}
func (f fullStore) Delete(ctx context.Context, o storage.Account, h []string) ([]string, error) {
	return f.inner.Delete(ctx, o, h)
}
func (f fullStore) DeleteAll(ctx context.Context, o storage.Account, ns storage.NSFilter) (map[storage.Namespace][]string, error) {
	return f.inner.DeleteAll(ctx, o, ns)
}
func (f fullStore) DeleteBefore(ctx context.Context, o storage.Account, ns storage.NSFilter, b int64) (map[storage.Namespace][]string, error) {
	return f.inner.DeleteBefore(ctx, o, ns, b)
}
func (f fullStore) ExpireAll(ctx context.Context, o storage.Account, ns storage.NSFilter, e int64) (map[storage.Namespace][]string, error) {
	return f.inner.ExpireAll(ctx, o, ns, e)
}
func (f fullStore) UpdateExpiry(ctx context.Context, o storage.Account, h []string, e []int64, m storage.ExpiryMode) ([]storage.ExpiryUpdate, error) {
	return f.inner.UpdateExpiry(ctx, o, h, e, m)
}
func (f fullStore) GetExpiries(ctx context.Context, o storage.Account, h []string) (map[string]int64, error) {
	return f.inner.GetExpiries(ctx, o, h)
}
func (f fullStore) Revoke(ctx context.Context, o storage.Account, t [][]byte, now int64) error {
	return f.inner.Revoke(ctx, o, t, now)
}
func (f fullStore) Unrevoke(ctx context.Context, o storage.Account, t [][]byte) (int, error) {
	return f.inner.Unrevoke(ctx, o, t)
}
func (f fullStore) Revoked(ctx context.Context, o storage.Account) ([][]byte, error) {
	return f.inner.Revoked(ctx, o)
}
func (f fullStore) IsRevoked(ctx context.Context, o storage.Account, t []byte) (bool, error) {
	return f.inner.IsRevoked(ctx, o, t)
}
func (f fullStore) Prune(ctx context.Context, now int64) (int, error) { return f.inner.Prune(ctx, now) }
func (f fullStore) ForEach(ctx context.Context, l, u uint64, fn func(storage.Message) error) error {
	return f.inner.ForEach(ctx, l, u, fn)
}
func (f fullStore) DropRange(ctx context.Context, l, u uint64) (int, error) {
	return f.inner.DropRange(ctx, l, u)
}
func (f fullStore) Stats() storage.Stats { return f.inner.Stats() }
func (f fullStore) Close() error         { return f.inner.Close() }

// The params the entry node forwards are the §6.4 bt dict: raw binary
// fields, namespace omitted when 0, shorten/extend as 1.
func TestForwardedParams(t *testing.T) {
	entry := newTestNode(t, 1)
	var got []map[string]any
	entry.swarm.replicate = func(ctx context.Context, method string, bt []byte) []MemberReply {
		v, err := bencode.Unmarshal(bt)
		if err != nil {
			t.Fatalf("%s params are not bencode: %v", method, err)
		}
		got = append(got, v.(map[string]any))
		return nil
	}
	u := sessionSigner(t, 7)
	entry.do(t, "store", u.Store(rpcclient.StoreArgs{Data: []byte("d"), Timestamp: testNow, TTL: day}))
	hs := seedMessages(t, entry, u, 0, 1)
	got = nil
	entry.do(t, "expire", u.Expire(hs, testNow+3600_000, rpcclient.ExpireExtend))
	entry.do(t, "delete_all", u.DeleteAll(storage.NSFilter{All: true}, testNow))
	if len(got) != 2 {
		t.Fatalf("forwarded %d requests", len(got))
	}
	exp := got[0]
	if len(exp["pubkey"].([]byte)) != 33 || len(exp["signature"].([]byte)) != 64 || len(exp["pubkey_ed25519"].([]byte)) != 32 {
		t.Fatalf("binary fields not raw: %v", exp)
	}
	if exp["extend"] != int64(1) || exp["expiry"] != testNow+3600_000 || string(exp["messages"].([]any)[0].([]byte)) != hs[0] {
		t.Fatalf("expire params %v", exp)
	}
	if string(got[1]["namespace"].([]byte)) != "all" || got[1]["timestamp"] != testNow {
		t.Fatalf("delete_all params %v", got[1])
	}
}

// The receiving side of sn.storage_cc.
func TestHandleStorageCC(t *testing.T) {
	n := newTestNode(t, 1)
	u := sessionSigner(t, 7)
	from := seedKeys(t, 2).Ed25519Pub
	storeBT := (&storeReq{auth: auth{account: u.Account}, timestamp: testNow, expiry: testNow + day, data: []byte("fwd")}).btParams()
	body := storageCC("store", bencode.MustMarshal(storeBT))
	for i := 0; i < 2; i++ { // idempotent
		rep := n.srv.HandleStorageCC(context.Background(), from, body)
		if rep.Status != 200 {
			t.Fatalf("forwarded store #%d: %d %s", i, rep.Status, rep.Body)
		}
		v, err := bencode.Unmarshal(rep.Body)
		if err != nil {
			t.Fatalf("reply is not bencode: %v", err)
		}
		d := v.(map[string]any)
		if len(d["signature"].([]byte)) != 64 || (i == 1) != (d["already"] == int64(1)) {
			t.Fatalf("reply #%d %v", i, d)
		}
	}
	if st := n.store.Stats(); st.Messages != 1 {
		t.Fatalf("%d messages after two forwarded copies", st.Messages)
	}
	if n.swarm.forwarded != nil {
		t.Fatalf("a forwarded request was forwarded again: %v", n.swarm.forwarded)
	}
	// params as a bt string holding the dict (OMQ part form) also work
	alt := bencode.MustMarshal([]any{"store", bencode.MustMarshal(storeBT)})
	if rep := n.srv.HandleStorageCC(context.Background(), from, alt); rep.Status != 200 {
		t.Fatalf("string-wrapped params: %d %s", rep.Status, rep.Body)
	}

	// forwarded delete_all gets ±70 s; a direct one ±60 s
	p := u.DeleteAll(storage.NSFilter{}, testNow-65_000)
	if status, _, _ := n.do(t, "delete_all", p); status != 406 {
		t.Fatalf("direct delete_all 65 s old: %d", status)
	}
	sig, _ := base64.StdEncoding.DecodeString(p["signature"].(string))
	daBT := map[string]any{"pubkey": u.Account.Bytes(), "pubkey_ed25519": mustHex(t, p["pubkey_ed25519"].(string)), "signature": sig, "timestamp": testNow - 65_000, "namespace": int64(0)}
	if rep := n.srv.HandleStorageCC(context.Background(), from, storageCC("delete_all", bencode.MustMarshal(daBT))); rep.Status != 200 {
		t.Fatalf("forwarded delete_all 65 s old: %d %s", rep.Status, rep.Body)
	}
	daBT["timestamp"] = testNow - 75_000
	if rep := n.srv.HandleStorageCC(context.Background(), from, storageCC("delete_all", bencode.MustMarshal(daBT))); rep.Status != 406 {
		t.Fatalf("forwarded delete_all 75 s old: %d %s", rep.Status, rep.Body)
	}
	daBT["timestamp"] = testNow - 65_000
	daBT["signature"] = make([]byte, 64)
	if rep := n.srv.HandleStorageCC(context.Background(), from, storageCC("delete_all", bencode.MustMarshal(daBT))); rep.Status != 401 || string(rep.Body) != "delete_all signature verification failed" {
		t.Fatalf("forwarded delete_all with a bad signature: %d %s", rep.Status, rep.Body)
	}

	for _, c := range []struct {
		name   string
		body   []byte
		status int
		text   string
	}{
		{"not bencode", []byte("nope"), 400, ""},
		{"not a list", bencode.MustMarshal(map[string]any{"a": 1}), 400, "invalid request: storage_cc body must be [method, params]"},
		{"non-recursive method", storageCC("retrieve", bencode.MustMarshal(map[string]any{"pubkey": u.Account.Bytes()})), 400, "invalid request: received invalid forwarded non-forwardable request"},
		{"unknown method", storageCC("frobnicate", []byte("de")), 400, "no method frobnicate"},
		{"bad params", storageCC("store", bencode.MustMarshal(map[string]any{"pubkey": []byte("short")})), 400, ""},
		{"signature of the wrong length", storageCC("delete", bencode.MustMarshal(map[string]any{"pubkey": u.Account.Bytes(), "signature": []byte("x"), "messages": []any{}})), 400, "invalid request: invalid signature: expected 64-byte Ed25519 signature"},
	} {
		rep := n.srv.HandleStorageCC(context.Background(), from, c.body)
		if rep.Status != c.status || (c.text != "" && string(rep.Body) != c.text) {
			t.Errorf("%s: %d %q, want %d %q", c.name, rep.Status, rep.Body, c.status, c.text)
		}
	}
}

var _ = errors.New
