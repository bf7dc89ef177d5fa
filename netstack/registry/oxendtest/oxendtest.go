// Package oxendtest is a test double of a Session node daemon's OxenMQ RPC
// (what a storage server uses): a table of service nodes with a block
// height and hash, the service node's keys, and records of the pings, peer
// reports and block subscriptions it received. Tests (and a devnet) run it
// on a unix socket like a real oxend.sock.
package oxendtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/snodebox/snodebox/netstack/omq"
	"github.com/snodebox/snodebox/netstack/registry"
)

// Oxend is the double.
type Oxend struct {
	// Keys answered by admin.get_service_node_privkey (hex): legacy,
	// Ed25519 (libsodium's 64-byte form) and X25519.
	Legacy, Ed25519, X25519 string

	mu      sync.Mutex
	nodes   []registry.Node
	height  uint64
	pings   []registry.PingInfo
	reports []map[string]any
	subs    []*omq.Message
	srv     *omq.Server
}

// New returns an oxend with a node table.
func New(nodes []registry.Node) *Oxend {
	return &Oxend{nodes: nodes, height: 1000}
}

func (o *Oxend) hash() string {
	h := sha256.Sum256([]byte(fmt.Sprint(o.height)))
	return hex.EncodeToString(h[:])
}

// SetNodes replaces the table (a new block) and pushes notify.block to
// every subscriber.
func (o *Oxend) SetNodes(nodes []registry.Node) {
	o.mu.Lock()
	o.nodes = nodes
	o.height++
	subs := append([]*omq.Message(nil), o.subs...)
	o.mu.Unlock()
	for _, s := range subs {
		s.Send("notify.block", []byte("x"))
	}
}

// Pings are the storage_server_ping bodies received.
func (o *Oxend) Pings() []registry.PingInfo {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]registry.PingInfo(nil), o.pings...)
}

// Reports are the report_peer_status bodies received.
func (o *Oxend) Reports() []map[string]any {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]map[string]any(nil), o.reports...)
}

func ok(v any) [][]byte {
	b, _ := json.Marshal(v)
	return [][]byte{[]byte("200"), b}
}

func bad(msg string) [][]byte { return [][]byte{[]byte("400"), []byte(msg)} }

// Serve answers on ln (a unix socket: admin, as oxend's is) until ctx ends.
func (o *Oxend) Serve(ctx context.Context, ln net.Listener) error {
	o.srv = &omq.Server{Categories: map[string]omq.Category{
		"rpc": {Access: omq.Access{Auth: omq.AuthNone}, Requests: map[string]omq.RequestHandler{
			"get_service_nodes": func(ctx context.Context, m *omq.Message) [][]byte {
				var p struct {
					Poll string `json:"poll_block_hash"`
				}
				if len(m.Data) > 0 && json.Unmarshal(m.Data[0], &p) != nil {
					return bad("bad json")
				}
				o.mu.Lock()
				defer o.mu.Unlock()
				res := registry.GetServiceNodesResult{Height: o.height, BlockHash: o.hash(), Hardfork: 19, SnodeRevision: 6, Status: "OK"}
				if p.Poll == res.BlockHash {
					res.Unchanged = true
				} else {
					for _, n := range o.nodes {
						res.ServiceNodeStates = append(res.ServiceNodeStates, registry.StateFromNode(n))
					}
				}
				return ok(res)
			},
		}},
		"admin": {Access: omq.Access{Auth: omq.AuthAdmin}, Requests: map[string]omq.RequestHandler{
			"get_service_node_privkey": func(ctx context.Context, m *omq.Message) [][]byte {
				return ok(map[string]string{"service_node_privkey": o.Legacy, "service_node_ed25519_privkey": o.Ed25519, "service_node_x25519_privkey": o.X25519})
			},
			"storage_server_ping": func(ctx context.Context, m *omq.Message) [][]byte {
				var p registry.PingInfo
				if len(m.Data) == 0 || json.Unmarshal(m.Data[0], &p) != nil {
					return bad("bad json")
				}
				o.mu.Lock()
				o.pings = append(o.pings, p)
				o.mu.Unlock()
				return ok(map[string]string{"status": "OK"})
			},
			"report_peer_status": func(ctx context.Context, m *omq.Message) [][]byte {
				var p map[string]any
				if len(m.Data) == 0 || json.Unmarshal(m.Data[0], &p) != nil {
					return bad("bad json")
				}
				o.mu.Lock()
				o.reports = append(o.reports, p)
				o.mu.Unlock()
				return ok(map[string]string{"status": "OK"})
			},
		}},
		"sub": {Access: omq.Access{Auth: omq.AuthAdmin}, Requests: map[string]omq.RequestHandler{
			"block": func(ctx context.Context, m *omq.Message) [][]byte {
				o.mu.Lock()
				defer o.mu.Unlock()
				o.subs = append(o.subs, m)
				return [][]byte{[]byte("OK")}
			},
		}},
	}}
	return o.srv.Serve(ctx, ln)
}

// Start serves on a unix socket in a test's temporary directory until the
// test ends and returns its address, ipc:///…/oxend.sock.
func (o *Oxend) Start(tb testing.TB) string {
	tb.Helper()
	sock := filepath.Join(tb.TempDir(), "oxend.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Serve(ctx, ln); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	return "ipc://" + sock
}
