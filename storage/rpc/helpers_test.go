package rpc

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/memstore"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// testNow is the clock of most tests: the time of the derived request
// signature vectors.
const testNow int64 = 1700000000000

// fakeSwarm is a swarm whose membership and member answers the test sets.
type fakeSwarm struct {
	mu        sync.Mutex
	id        uint64
	self      registry.Node
	members   []registry.Node // including self
	ours      bool
	notReady  []string
	snap      registry.Snapshot
	replicate func(ctx context.Context, method string, bt []byte) []MemberReply
	forwarded []string // methods Replicate was called with
}

func (f *fakeSwarm) Lookup(a storage.Account) (uint64, []registry.Node, bool) {
	return f.id, f.members, f.ours
}
func (f *fakeSwarm) NotReady() []string { return f.notReady }
func (f *fakeSwarm) Replicate(ctx context.Context, method string, bt []byte) []MemberReply {
	f.mu.Lock()
	f.forwarded = append(f.forwarded, method)
	rep := f.replicate
	f.mu.Unlock()
	if rep == nil {
		return nil
	}
	return rep(ctx, method, bt)
}
func (f *fakeSwarm) Snapshot() registry.Snapshot { return f.snap }

func nodeFor(k *identity.Keys, port uint16) registry.Node {
	var n registry.Node
	copy(n.Ed25519[:], k.Ed25519Pub)
	n.Legacy = n.Ed25519
	n.X25519 = k.X25519Pub
	n.IP = netip.MustParseAddr("127.0.0.1")
	n.HTTPSPort = port
	n.OMQPort = port + 1
	n.SwarmID = 0x1234
	n.Version = [3]uint16{2, 11, 3}
	return n
}

func seedKeys(t testing.TB, b byte) *identity.Keys {
	t.Helper()
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = b
	}
	k, err := identity.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type testNode struct {
	srv   *Server
	store *memstore.Store
	keys  *identity.Keys
	swarm *fakeSwarm
	now   *int64
}

func newTestNode(t testing.TB, keyByte byte) *testNode {
	t.Helper()
	k := seedKeys(t, keyByte)
	self := nodeFor(k, 20000+uint16(keyByte)*2)
	sw := &fakeSwarm{id: 0x1234, self: self, members: []registry.Node{self}, ours: true,
		snap: registry.Snapshot{Nodes: []registry.Node{self}, Height: 1000, BlockHash: "abcd", Hardfork: [2]int{19, 6}}}
	st := memstore.New()
	now := testNow
	tn := &testNode{store: st, keys: k, swarm: sw, now: &now}
	tn.srv = New(Config{
		Keys: k, Store: st, Swarm: sw,
		Now:       func() time.Time { return time.UnixMilli(*tn.now) },
		RateLimit: RateLimit{Disabled: true},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	return tn
}

// do runs a JSON request through Invoke and decodes a JSON answer.
func (tn *testNode) do(t testing.TB, method string, params any) (int, map[string]any, string) {
	t.Helper()
	status, out, isJSON := tn.srv.Invoke(context.Background(), rpcclient.Body(method, params))
	if !isJSON {
		return status, nil, string(out)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("%s: answer is not a JSON object: %v: %s", method, err, out)
	}
	return status, m, string(out)
}

func (tn *testNode) mine(t testing.TB, body map[string]any) map[string]any {
	t.Helper()
	sw, ok := body["swarm"].(map[string]any)
	if !ok {
		t.Fatalf("answer has no swarm object: %v", body)
	}
	e, ok := sw[tn.keys.Ed25519Hex()].(map[string]any)
	if !ok {
		t.Fatalf("swarm has no entry for this node: %v", sw)
	}
	return e
}

// checkNodeSig verifies a b64 signature field made by keys over msg.
func checkNodeSig(t testing.TB, keys *identity.Keys, sigB64 any, msg string) {
	t.Helper()
	s, _ := sigB64.(string)
	sig, err := base64.StdEncoding.DecodeString(s)
	if err != nil || !ed25519.Verify(keys.Ed25519Pub, []byte(msg), sig) {
		t.Fatalf("node signature %q does not verify over %q", s, msg)
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sessionSigner(t testing.TB, b byte) *rpcclient.Signer {
	t.Helper()
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = b
	}
	s, err := rpcclient.NewSession(seed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func groupSigner(t testing.TB, b byte) *rpcclient.Signer {
	t.Helper()
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = b
	}
	s, err := rpcclient.NewGroup(seed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var _ = peer.Reply{}

func seed32(b byte) []byte {
	s := make([]byte, 32)
	for i := range s {
		s[i] = b
	}
	return s
}

func edPub(seed []byte) ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
}

func signWith(seed, msg []byte) []byte { return ed25519.Sign(ed25519.NewKeyFromSeed(seed), msg) }

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var nsAll = storage.NSFilter{All: true}

// bencodeStore turns unsigned JSON store params into the forwarded bt form.
func bencodeStore(t testing.TB, p map[string]any) []byte {
	t.Helper()
	req, err := parseStore(&params{j: rawParams(t, p)})
	if err != nil {
		t.Fatal(err)
	}
	return bencode.MustMarshal(req.(*storeReq).btParams())
}

func rawParams(t testing.TB, p map[string]any) map[string]json.RawMessage {
	t.Helper()
	b, _ := json.Marshal(p)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
