package onionclient

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/onion/onionreq"
	"github.com/snodebox/snodebox/netstack/registry"
)

func TestParseNodes(t *testing.T) {
	k, _ := identity.Generate()
	raw := `[{"ed25519":"` + k.Ed25519Hex() + `","x25519":"` + k.X25519Hex() + `","https":"https://127.0.0.1:23100","swarm_id":"8000000000000000"},
	         {"ed25519":"` + k.Ed25519Hex() + `","https":"https://[::1]:443"}]`
	nodes, err := ParseNodes([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if nodes[0].SwarmID != 1<<63 || nodes[0].HTTPSAddr() != "127.0.0.1:23100" || nodes[0].X25519 != k.X25519Pub {
		t.Fatalf("node 0: %+v", nodes[0])
	}
	// x25519 derived from ed25519 when absent (spec §9), no swarm.
	if nodes[1].X25519 != k.X25519Pub || nodes[1].SwarmID != registry.NoSwarm || nodes[1].HTTPSAddr() != "[::1]:443" {
		t.Fatalf("node 1: %+v", nodes[1])
	}
	for _, bad := range []string{`[]`, `{}`, `[{"ed25519":"00","https":"https://1.2.3.4:1"}]`,
		`[{"ed25519":"` + k.Ed25519Hex() + `","https":"http://1.2.3.4:1"}]`,
		`[{"ed25519":"` + k.Ed25519Hex() + `","https":"https://host.example:1"}]`} {
		if _, err := ParseNodes([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func testNodes(n int) []registry.Node {
	var out []registry.Node
	for i := 0; i < n; i++ {
		var nd registry.Node
		nd.Ed25519[0], nd.Ed25519[1] = byte(0x10*i), byte(i)
		nd.SwarmID = uint64(i % 2)
		out = append(out, nd)
	}
	return out
}

func TestPaths(t *testing.T) {
	nodes := testNodes(6)
	p, err := PathByKeys(nodes, []string{hex.EncodeToString(nodes[3].Ed25519[:2]), nodes[1].Ed25519Hex(), "30"})
	if err != nil || p[0] != nodes[3] || p[1] != nodes[1] || p[2] != nodes[3] {
		t.Fatalf("by keys: %v %v", p, err)
	}
	if _, err := PathByKeys(nodes, []string{"ff"}); err == nil {
		t.Error("unknown key accepted")
	}
	if _, err := PathByKeys(nodes, []string{""}); err == nil {
		t.Error("empty key accepted")
	}
	for i := 0; i < 50; i++ {
		p, err := RandomPath(nodes, 3, func(n registry.Node) bool { return n.SwarmID == 1 })
		if err != nil {
			t.Fatal(err)
		}
		seen := map[[32]byte]bool{}
		for _, n := range p {
			if seen[n.Ed25519] {
				t.Fatalf("path repeats a node: %v", p)
			}
			seen[n.Ed25519] = true
		}
		if len(p) != 3 || p[2].SwarmID != 1 {
			t.Fatalf("random path %v", p)
		}
	}
	if _, err := RandomPath(nodes, 7, nil); err == nil {
		t.Error("more hops than nodes accepted")
	}
}

// Build wraps one layer per node; the first hop's layer is the entry body,
// and each layer's routing names the next node (spec §8.5).
func TestBuildLayersOpenHopByHop(t *testing.T) {
	var keys []*identity.Keys
	var path []registry.Node
	for i := 0; i < 3; i++ {
		k, _ := identity.Generate()
		keys = append(keys, k)
		var n registry.Node
		copy(n.Ed25519[:], k.Ed25519Pub)
		n.X25519 = k.X25519Pub
		path = append(path, n)
	}
	for _, enc := range []onionreq.EncType{onionreq.AESGCM, onionreq.XChaCha20} {
		o, err := Build(path, []byte(`{"method":"info"}`), enc)
		if err != nil {
			t.Fatal(err)
		}
		req, err := onionreq.ParseEntry(o.Body)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			priv, _ := ecdhKey(k)
			c, err := onionreq.NodeCipher(req.EncType, priv, req.EphemeralKey[:])
			if err != nil {
				t.Fatal(err)
			}
			pt, err := c.Open(req.Ciphertext)
			if err != nil {
				t.Fatalf("%v hop %d cannot open its layer: %v", enc, i, err)
			}
			in, err := onionreq.ParseInner(pt)
			if err != nil {
				t.Fatal(err)
			}
			if i == len(keys)-1 {
				if in.Kind != onionreq.Final || string(in.Blob) != `{"method":"info"}` {
					t.Fatalf("destination layer %+v", in)
				}
				// The destination's sealed answer decodes.
				ans, _ := c.Seal([]byte(`{"status":200,"body":"{\"ok\":1}"}`))
				r, err := o.Decode(200, ans)
				if err != nil || r.Status != 200 || string(r.Body) != `{"ok":1}` {
					t.Fatalf("decode: %+v %v", r, err)
				}
				break
			}
			if in.Kind != onionreq.Relay || in.Destination != path[i+1].Ed25519 || in.EncType != enc {
				t.Fatalf("hop %d layer %+v", i, in)
			}
			req = onionreq.Request{Ciphertext: in.Blob, EphemeralKey: in.EphemeralKey, EncType: in.EncType}
		}
	}
	if _, err := Build(nil, nil, onionreq.AESGCM); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty path: %v", err)
	}
	o, _ := Build(path, nil, onionreq.AESGCM)
	if _, err := o.Decode(502, []byte("Next node not found: ab")); err == nil {
		t.Fatal("a path error decoded as an answer")
	}
	if _, err := o.Decode(200, []byte("bm90IGEgY2lwaGVydGV4dA==")); err == nil {
		t.Fatal("garbage decoded as an answer")
	}
}
