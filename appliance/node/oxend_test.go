package node_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/appliance/node/nodetest"
	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/omq"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/netstack/registry/oxendtest"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// A node pointed at an oxend over OxenMQ takes its keys from it (none on
// disk), reaches healthy from oxend's list, answers get_swarm from it,
// follows a list change that oxend announces with notify.block, and pings.
func TestNodeFollowsOxendOverOMQ(t *testing.T) {
	seed := make([]byte, 32)
	seed[3] = 42
	keys, err := identity.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	listen := nodetest.FreeAddr(t)
	_, portStr, _ := net.SplitHostPort(listen)
	self := registry.Node{IP: netip.MustParseAddr("127.0.0.1"), SwarmID: 0}
	copy(self.Ed25519[:], keys.Ed25519Pub)
	self.Legacy, self.X25519 = self.Ed25519, keys.X25519Pub
	var port uint16
	for _, c := range portStr {
		port = port*10 + uint16(c-'0')
	}
	self.HTTPSPort = port
	other := self
	other.Ed25519[0] ^= 0xff
	other.Legacy = other.Ed25519
	other.SwarmID = 1 << 63

	fake := oxendtest.New([]registry.Node{self})
	fake.Legacy = hex.EncodeToString(seed)
	fake.Ed25519 = hex.EncodeToString(ed25519.NewKeyFromSeed(seed))
	fake.X25519 = hex.EncodeToString(keys.X25519Priv[:])
	addr := fake.Start(t)

	data := t.TempDir()
	n := nodetest.Start(t, node.Config{DataDir: data, Listen: listen, Registry: "oxend-omq:" + addr})
	if n.Keys.Ed25519Hex() != hex.EncodeToString(keys.Ed25519Pub) {
		t.Fatalf("node key %s, oxend's %x", n.Keys.Ed25519Hex(), keys.Ed25519Pub)
	}
	if _, err := os.Stat(filepath.Join(data, "keys")); err == nil {
		t.Error("the node wrote keys of its own")
	}
	nodetest.Until(t, "healthy from oxend's list", func() bool { return n.Status().Healthy })
	nodetest.Until(t, "a ping to oxend", func() bool { return len(fake.Pings()) > 0 })
	if p := fake.Pings()[0]; p.Ed25519 != n.Keys.Ed25519Hex() || p.HTTPSPort != int(port) {
		t.Errorf("ping %+v", p)
	}
	nodetest.Until(t, "oxend facts on the status page", func() bool {
		o := n.Status().Oxend
		return o != nil && o.Height == 1000 && !o.LastPing.IsZero() && o.Active && o.PingError == ""
	})
	url := "https://" + listen
	swarmOf := func(pub string) (string, int) {
		code, body, err := rpcclient.Do(context.Background(), url, "get_swarm", map[string]any{"pubkey": pub})
		if err != nil || code != 200 {
			t.Fatalf("get_swarm: %d %v %s", code, err, body)
		}
		var ans struct {
			Swarm  string           `json:"swarm"`
			Snodes []map[string]any `json:"snodes"`
		}
		json.Unmarshal(body, &ans)
		return ans.Swarm, len(ans.Snodes)
	}
	// An account at the middle of the ring: before the change our swarm
	// (0) owns everything.
	acct := "05" + "80" + hex.EncodeToString(make([]byte, 31))
	if sw, members := swarmOf(acct); sw != "0" || members != 1 {
		t.Fatalf("before the change: swarm %s with %d members", sw, members)
	}
	fake.SetNodes([]registry.Node{self, other})
	nodetest.Until(t, "the new swarm from oxend", func() bool {
		sw, _ := swarmOf(acct)
		return sw == "8000000000000000"
	})
}

// With --omq-listen the node serves storage.<method> to anyone over
// OxenMQ (spec §1.2): [JSON params] in, [body] or [status, text] out.
func TestStorageRPCOverOMQ(t *testing.T) {
	omqAddr := nodetest.FreeAddr(t)
	n := nodetest.Start(t, node.Config{OMQListen: omqAddr})
	nodetest.Until(t, "healthy", func() bool { return n.Status().Healthy })
	cl := &omq.Client{}
	defer cl.Close()
	a := omq.Address{Network: "tcp", Addr: omqAddr, ServerKey: n.Keys.X25519Pub}
	ctx := context.Background()
	r, err := cl.Request(ctx, a, "storage.info", []byte("{}"))
	if err != nil || len(r) != 1 || !json.Valid(r[0]) {
		t.Fatalf("storage.info: %q %v", r, err)
	}
	var info map[string]any
	json.Unmarshal(r[0], &info)
	if _, ok := info["version"]; !ok {
		t.Errorf("info answer %s", r[0])
	}
	r, err = cl.Request(ctx, a, "storage.retrieve", []byte(`{"pubkey": "nope"}`))
	if err != nil || len(r) != 2 || string(r[0]) != "400" {
		t.Fatalf("bad retrieve: %q %v", r, err)
	}
	// sn.* is only for active service nodes: this client is not one.
	if _, err := cl.Request(ctx, a, "sn.ping"); err == nil {
		t.Error("sn.ping from a client that is not a service node was answered")
	}
}
