package omqpeer

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

type node struct {
	keys *identity.Keys
	rec  registry.Node
	t    *Transport
}

func startNodes(t testing.TB, n int, active map[int]bool) []*node {
	var nodes []*node
	var lns []net.Listener
	for i := 0; i < n; i++ {
		k, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var rec registry.Node
		copy(rec.Ed25519[:], k.Ed25519Pub)
		rec.X25519 = k.X25519Pub
		rec.IP = netip.MustParseAddr("127.0.0.1")
		rec.OMQPort = uint16(ln.Addr().(*net.TCPAddr).Port)
		nodes = append(nodes, &node{keys: k, rec: rec})
		lns = append(lns, ln)
	}
	for i, nd := range nodes {
		nd.t = New(Config{Keys: nd.keys, ByX25519: func(x [32]byte) (registry.Node, bool) {
			for j, o := range nodes {
				if o.rec.X25519 == x && active[j] {
					return o.rec, true
				}
			}
			return registry.Node{}, false
		}})
		t.Cleanup(nd.t.Close)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go nd.t.Serve(ctx, lns[i])
	}
	return nodes
}

func TestCallsBetweenServiceNodes(t *testing.T) {
	nodes := startNodes(t, 3, map[int]bool{0: true, 1: true})
	var sawFrom ed25519.PublicKey
	nodes[1].t.Handle(peer.CmdStorageCC, func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
		sawFrom = from
		return peer.Reply{Status: 200, Body: append([]byte("stored:"), body...)}
	})
	nodes[1].t.Handle(peer.CmdPing, func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
		panic("boom")
	})
	ctx := context.Background()
	cc := bencode.MustMarshal([]any{"store", map[string]any{"pubkey": "05ab", "ttl": 100}})
	r, err := nodes[0].t.Call(ctx, nodes[1].rec, peer.CmdStorageCC, cc)
	if err != nil || r.Status != 200 || string(r.Body) != "stored:"+string(cc) {
		t.Fatalf("storage_cc: %+v %v", r, err)
	}
	// On the wire it is upstream's two parts, [method, bt-params].
	if parts, err := splitBody(peer.CmdStorageCC, cc); err != nil || len(parts) != 2 || string(parts[0]) != "store" {
		t.Fatalf("storage_cc parts %q %v", parts, err)
	}
	if !sawFrom.Equal(nodes[0].keys.Ed25519Pub) {
		t.Errorf("handler saw caller %x, want node 0's Ed25519 key", sawFrom)
	}
	nodes[1].t.Handle(peer.CmdData, func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
		return peer.Reply{Status: 200}
	})
	if r, err := nodes[0].t.Call(ctx, nodes[1].rec, peer.CmdData, []byte("blob")); err != nil || r.Status != 200 {
		t.Errorf("sn.data: %+v %v", r, err)
	}
	if _, err := nodes[0].t.Call(ctx, nodes[1].rec, peer.CmdStorageCC, []byte("not a list")); err == nil {
		t.Error("a storage_cc body that is not [method, params] was sent")
	}
	if r, err := nodes[0].t.Call(ctx, nodes[1].rec, peer.CmdPing, nil); err != nil || r.Status != 500 {
		t.Errorf("a panicking handler: %+v %v", r, err)
	}
	// Node 2 is not in the active set: refused as FORBIDDEN_SN.
	if r, err := nodes[2].t.Call(ctx, nodes[1].rec, peer.CmdStorageCC, cc); err != nil || r.Status != 403 {
		t.Errorf("a caller outside the active set: %+v %v", r, err)
	}
	// A peer without an OMQ port and no fallback.
	noOMQ := nodes[1].rec
	noOMQ.OMQPort = 0
	if _, err := nodes[0].t.Call(ctx, noOMQ, peer.CmdPing, nil); !errors.Is(err, peer.ErrUnreachable) {
		t.Errorf("no OMQ port: %v", err)
	}
	// A wrong X25519 key for the peer: the CURVE handshake fails.
	wrong := nodes[1].rec
	wrong.X25519[0] ^= 1
	if _, err := nodes[0].t.Call(ctx, wrong, peer.CmdPing, nil); !errors.Is(err, peer.ErrUnreachable) && !errors.Is(err, peer.ErrTimeout) {
		t.Errorf("wrong peer key: %v", err)
	}
}

// An upstream peer's storage_cc arrives as two parts; the handler gets them
// as the one bt list the HTTPS framing carries, and malformed params are
// refused before any handler runs.
func TestStorageCCPartsJoin(t *testing.T) {
	params := bencode.MustMarshal(map[string]any{"pubkey": "05ab", "data": "x"})
	body, err := joinParts(peer.CmdStorageCC, [][]byte{[]byte("store"), params})
	if err != nil {
		t.Fatal(err)
	}
	if want := bencode.MustMarshal([]any{"store", map[string]any{"pubkey": "05ab", "data": "x"}}); string(body) != string(want) {
		t.Errorf("joined %q, want %q", body, want)
	}
	for _, parts := range [][][]byte{
		{[]byte("store"), []byte("d6:pubkey")},
		{[]byte("store"), append(params, 'x')},
		{[]byte("store")},
	} {
		if b, err := joinParts(peer.CmdStorageCC, parts); err == nil || !strings.HasPrefix(err.Error(), "Invalid request") {
			t.Errorf("parts %q joined to %q, %v: want an Invalid request error", parts, b, err)
		}
	}
}
