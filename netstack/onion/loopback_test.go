package onion_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/appliance/node/nodetest"
	"github.com/snodebox/snodebox/netstack/onion/onionclient"
	"github.com/snodebox/snodebox/netstack/onion/onionreq"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage/rpc"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// devnet is n real nodes (appliance/node, HTTPS on loopback, bbolt in temp
// dirs, the httpspeer transport) on a devnet registry served by node 0, so
// they know each other as a real network would.
type devnet struct {
	nodes []*node.Node
}

func startDevnet(t testing.TB, n int, allowPrivate func(i int) bool) *devnet {
	t.Helper()
	d := &devnet{}
	var registryURL string
	for i := 0; i < n; i++ {
		cfg := node.Config{
			RateLimit:         rpc.RateLimit{Disabled: true},
			AllowPrivateProxy: allowPrivate != nil && allowPrivate(i),
		}
		if i == 0 {
			cfg.ServeRegistry = true
		} else {
			cfg.Registry = registryURL
		}
		nd := nodetest.Start(t, cfg)
		if i == 0 {
			registryURL = "devnet:https://" + nd.Self.HTTPSAddr()
		}
		d.nodes = append(d.nodes, nd)
	}
	// Wait until every node is in a swarm and knows every other node.
	for _, nd := range d.nodes {
		nodetest.Until(t, fmt.Sprintf("node %s in a swarm, knowing all %d nodes", nd.Self, n), func() bool {
			return nd.Swarm.NotReady() == nil && len(nd.Swarm.Snapshot().Nodes) == n
		})
	}
	return d
}

func (d *devnet) path(idx ...int) []registry.Node {
	var p []registry.Node
	for _, i := range idx {
		p = append(p, d.nodes[i].Self)
	}
	return p
}

var insecure = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// post sends a raw entry body to node i over HTTPS.
func (d *devnet) post(t testing.TB, i int, body []byte) (int, []byte) {
	t.Helper()
	resp, err := insecure.Post(onionclient.URL(d.nodes[i].Self)+"/onion_req/v2", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func account(t testing.TB, name string) *rpcclient.Signer {
	t.Helper()
	seed := sha256.Sum256([]byte("onion loopback " + name))
	s, err := rpcclient.NewEd25519(0x05, seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func storeBody(s *rpcclient.Signer, data []byte) []byte {
	return rpcclient.Body("store", rpcclient.StoreUnsigned(s.Pubkey(), rpcclient.StoreArgs{
		Data: data, Timestamp: time.Now().UnixMilli(), TTL: 3600 * 1000}))
}

func retrieveBody(s *rpcclient.Signer) []byte {
	return rpcclient.Body("retrieve", s.Retrieve(rpcclient.RetrieveArgs{Timestamp: time.Now().UnixMilli()}))
}

// Store and retrieve through 1-, 2- and 3-hop paths with both encryptions,
// over HTTPS and the mutual-TLS peer transport, on real nodes.
func TestLoopbackStoreRetrieve(t *testing.T) {
	d := startDevnet(t, 3, nil)
	cl := onionclient.New()
	defer cl.CloseIdleConnections()
	ctx := context.Background()
	for _, enc := range encTypes {
		for _, p := range [][]int{{1}, {0, 2}, {2, 1, 0}} {
			name := enc.String() + "/" + strconv.Itoa(len(p)) + "hops"
			t.Run(name, func(t *testing.T) {
				acct := account(t, name)
				data := []byte("through the onion: " + name)
				r, err := cl.Do(ctx, d.path(p...), storeBody(acct, data), enc)
				if err != nil {
					t.Fatal(err)
				}
				if r.Status != http.StatusOK {
					t.Fatalf("store: %d %s", r.Status, r.Body)
				}
				var stored struct{ Hash string }
				if err := json.Unmarshal(r.Body, &stored); err != nil || stored.Hash == "" {
					t.Fatalf("store answer %s: %v", r.Body, err)
				}
				// Read back through a different path ending at another
				// member of the swarm (the store was replicated to it).
				back := []int{p[len(p)-1], (p[len(p)-1] + 1) % 3}
				r, err = cl.Do(ctx, d.path(back...), retrieveBody(acct), enc)
				if err != nil {
					t.Fatal(err)
				}
				var got struct {
					Messages []struct{ Hash, Data string }
				}
				if r.Status != http.StatusOK || json.Unmarshal(r.Body, &got) != nil || len(got.Messages) != 1 {
					t.Fatalf("retrieve: %d %s", r.Status, r.Body)
				}
				if got.Messages[0].Hash != stored.Hash || got.Messages[0].Data != base64.StdEncoding.EncodeToString(data) {
					t.Fatalf("retrieved %+v, stored %s", got.Messages[0], stored.Hash)
				}
			})
		}
	}
}

func TestLoopbackPathErrors(t *testing.T) {
	d := startDevnet(t, 3, nil)
	acct := account(t, "errors")
	t.Run("tampered layer at each hop", func(t *testing.T) {
		for _, enc := range encTypes {
			for hop := 0; hop < 3; hop++ {
				body, _ := build(t, d.path(0, 1, 2), onionSpec{enc: enc, payload: storeBody(acct, []byte("x")), tamperAt: hop})
				if status, out := d.post(t, 0, body); status != http.StatusBadRequest || string(out) != "Invalid ciphertext" {
					t.Fatalf("%v hop %d: %d %q", enc, hop, status, out)
				}
			}
		}
	})
	t.Run("unknown destination", func(t *testing.T) {
		ghost := d.nodes[2].Self
		ghost.Ed25519[0] ^= 0xff
		_, err := onionclient.New().Do(context.Background(), []registry.Node{d.nodes[0].Self, d.nodes[1].Self, ghost}, storeBody(acct, []byte("x")), onionreq.AESGCM)
		pe, ok := err.(*onionclient.PathError)
		if !ok || pe.Status != http.StatusBadGateway || pe.Body != "Next node not found: "+ghost.Ed25519Hex() {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("16 relayed hops", func(t *testing.T) {
		p := make([]int, 17)
		for i := range p {
			p[i] = i % 3
		}
		_, err := onionclient.New().Do(context.Background(), d.path(p...), storeBody(acct, []byte("x")), onionreq.XChaCha20)
		pe, ok := err.(*onionclient.PathError)
		if !ok || pe.Status != http.StatusBadRequest || pe.Body != "onion request max path length exceeded" {
			t.Fatalf("err = %v", err)
		}
		// 15 relayed hops are fine.
		r, err := onionclient.New().Do(context.Background(), d.path(p[:16]...), rpcclient.Body("info", rpcclient.Info()), onionreq.XChaCha20)
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("15 hops: %v %+v", err, r)
		}
	})
	t.Run("first hop with the wrong key is refused by the client", func(t *testing.T) {
		imposter := d.nodes[1].Self
		imposter.IP, imposter.HTTPSPort = d.nodes[0].Self.IP, d.nodes[0].Self.HTTPSPort
		_, err := onionclient.New().Do(context.Background(), []registry.Node{imposter}, rpcclient.Body("info", rpcclient.Info()), onionreq.AESGCM)
		if err == nil {
			t.Fatal("client talked to a node presenting another identity")
		}
	})
}

// Proxy to an HTTP server from a real node: allowed where the node's
// config allows private targets (node 2), refused by default (node 1).
func TestLoopbackProxy(t *testing.T) {
	d := startDevnet(t, 3, func(i int) bool { return i == 2 })
	srv := newLSRPC(t)
	for _, enc := range encTypes {
		o, err := onionclient.BuildToServer(d.path(0, 2), srv.target(""), []byte("ping"), enc)
		if err != nil {
			t.Fatal(err)
		}
		r, err := onionclient.New().Send(context.Background(), onionclient.URL(d.nodes[0].Self), o)
		if err != nil || string(r.Body) != "server got: ping" {
			t.Fatalf("%v via node 2: %v %q", enc, err, r.Body)
		}
	}
	before := srv.hits.Load()
	o, _ := onionclient.BuildToServer(d.path(0, 1), srv.target(""), []byte("ping"), onionreq.AESGCM)
	_, err := onionclient.New().Send(context.Background(), onionclient.URL(d.nodes[0].Self), o)
	pe, ok := err.(*onionclient.PathError)
	if !ok || pe.Status != http.StatusBadGateway || pe.Body != "Proxy target not allowed" {
		t.Fatalf("via default node 1: %v", err)
	}
	if srv.hits.Load() != before {
		t.Fatal("default node contacted a loopback server")
	}
}
