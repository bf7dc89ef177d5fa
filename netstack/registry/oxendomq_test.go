package registry_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/netstack/registry/oxendtest"
)

func testNodes(n int, swarm uint64) []registry.Node {
	var out []registry.Node
	for i := 0; i < n; i++ {
		var nd registry.Node
		nd.Ed25519[0], nd.Ed25519[1] = byte(i), byte(swarm)
		nd.Legacy, nd.X25519 = nd.Ed25519, nd.Ed25519
		nd.X25519[31] = 9
		nd.IP = netip.MustParseAddr("10.1.0." + string(rune('1'+i)))
		nd.HTTPSPort, nd.OMQPort, nd.SwarmID = 22021, 22020, swarm
		out = append(out, nd)
	}
	return out
}

func TestOxendOverOMQ(t *testing.T) {
	seed := make([]byte, 32)
	seed[0] = 7
	priv := ed25519.NewKeyFromSeed(seed)
	fake := oxendtest.New(testNodes(3, 0))
	fake.Legacy, fake.Ed25519, fake.X25519 = hex.EncodeToString(seed), hex.EncodeToString(priv), strings.Repeat("11", 32)
	addr := fake.Start(t)
	ctx := context.Background()

	src, err := registry.NewOxendOMQ(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if src.Name() != "oxend-omq:"+addr {
		t.Errorf("name %q", src.Name())
	}
	keys, err := src.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(keys.Ed25519[:]) != hex.EncodeToString(seed) || keys.X25519[0] != 0x11 {
		t.Errorf("keys: ed25519 seed %x", keys.Ed25519)
	}
	snap, changed, err := src.Fetch(ctx)
	if err != nil || !changed || len(snap.Nodes) != 3 || snap.Height != 1000 {
		t.Fatalf("first fetch: %d nodes, changed %v, height %d, %v", len(snap.Nodes), changed, snap.Height, err)
	}
	if snap.Nodes[1].IP.String() != "10.1.0.2" || snap.Nodes[1].OMQPort != 22020 {
		t.Errorf("node 1: %+v", snap.Nodes[1])
	}
	// Unchanged: the poll hash matches.
	if _, changed, err := src.Fetch(ctx); err != nil || changed {
		t.Fatalf("second fetch: changed %v %v", changed, err)
	}
	if err := src.Subscribe(ctx); err != nil {
		t.Fatal(err)
	}
	fake.SetNodes(testNodes(5, 0))
	select {
	case <-src.Blocks():
	case <-time.After(5 * time.Second):
		t.Fatal("no notify.block after a new block")
	}
	if snap, changed, err := src.Fetch(ctx); err != nil || !changed || len(snap.Nodes) != 5 {
		t.Fatalf("after the new block: %d nodes, changed %v, %v", len(snap.Nodes), changed, err)
	}
	if err := src.Ping(ctx, registry.PingInfo{Version: [3]int{2, 11, 3}, Ed25519: "ab", HTTPSPort: 22021, OMQPort: 22020}); err != nil {
		t.Fatal(err)
	}
	if p := fake.Pings(); len(p) != 1 || p[0].HTTPSPort != 22021 || p[0].Version != [3]int{2, 11, 3} {
		t.Errorf("pings %+v", p)
	}
	if at, e := src.LastPing(); at.IsZero() || e != "" {
		t.Errorf("last ping %v %q", at, e)
	}
	if err := src.ReportPeer(ctx, [32]byte{1}, false); err != nil {
		t.Fatal(err)
	}
	if r := fake.Reports(); len(r) != 1 || r[0]["passed"] != false || r[0]["type"] != "storage" {
		t.Errorf("reports %v", r)
	}
}

func TestParseOxendOMQ(t *testing.T) {
	if a, err := registry.ParseOxendOMQ("curve://127.0.0.1:22029/" + strings.Repeat("ab", 32)); err != nil || a.Network != "tcp" || a.ServerKey[0] != 0xab {
		t.Errorf("curve: %+v %v", a, err)
	}
	for _, bad := range []string{"ipc://relative.sock", "curve://127.0.0.1:1/zz", "curve://127.0.0.1:1", "http://x"} {
		if _, err := registry.ParseOxendOMQ(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
