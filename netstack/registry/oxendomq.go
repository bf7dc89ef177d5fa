package registry

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/snodebox/snodebox/netstack/omq"
)

// OxendOMQ follows a Session node daemon over OxenMQ, the way upstream's
// storage server does: ipc:///path/oxend.sock (NULL, admin by socket
// permissions) or curve://IP:PORT/X25519HEX. Besides the service-node list
// it serves the node's keys (admin.get_service_node_privkey), uptime-proof
// pings (admin.storage_server_ping), peer reports
// (admin.report_peer_status) and block notifications (sub.block, then
// notify.block pushes).
type OxendOMQ struct {
	addr   omq.Address
	name   string
	client *omq.Client
	blocks chan struct{}

	poll    blockPoll
	mu      sync.Mutex
	pinged  time.Time
	pingErr string
}

// ParseOxendOMQ reads "ipc:///path" or "curve://IP:PORT/X25519HEX".
func ParseOxendOMQ(spec string) (omq.Address, error) {
	switch {
	case strings.HasPrefix(spec, "ipc://"):
		p := strings.TrimPrefix(spec, "ipc://")
		if !strings.HasPrefix(p, "/") {
			return omq.Address{}, fmt.Errorf("oxend-omq %q: want ipc:///absolute/path/oxend.sock", spec)
		}
		return omq.Address{Network: "unix", Addr: p}, nil
	case strings.HasPrefix(spec, "curve://"):
		rest := strings.TrimPrefix(spec, "curve://")
		hostport, key, ok := strings.Cut(rest, "/")
		kb, err := hex.DecodeString(key)
		if !ok || err != nil || len(kb) != 32 || hostport == "" {
			return omq.Address{}, fmt.Errorf("oxend-omq %q: want curve://IP:PORT/ followed by oxend's 64-hex X25519 key", spec)
		}
		a := omq.Address{Network: "tcp", Addr: hostport}
		copy(a.ServerKey[:], kb)
		return a, nil
	}
	return omq.Address{}, fmt.Errorf("oxend-omq %q: want ipc:///path or curve://IP:PORT/X25519HEX", spec)
}

// NewOxendOMQ makes the source; client carries our CURVE identity (the
// node's X25519 key once known; nil for an ephemeral one).
func NewOxendOMQ(spec string, client *omq.Client) (*OxendOMQ, error) {
	a, err := ParseOxendOMQ(spec)
	if err != nil {
		return nil, err
	}
	o := &OxendOMQ{addr: a, name: "oxend-omq:" + spec, blocks: make(chan struct{}, 1)}
	if client == nil {
		client = &omq.Client{}
	}
	if client.Handlers == nil {
		client.Handlers = map[string]func([][]byte){}
	}
	client.Handlers["notify.block"] = func([][]byte) {
		select {
		case o.blocks <- struct{}{}:
		default:
		}
	}
	o.client = client
	return o, nil
}

// Name implements Source.
func (o *OxendOMQ) Name() string { return o.name }

// Blocks signals a new block (after Subscribe): fetch again.
func (o *OxendOMQ) Blocks() <-chan struct{} { return o.blocks }

// call makes one oxend RPC: data is the JSON params, the answer is
// [status, json].
func (o *OxendOMQ) call(ctx context.Context, cmd string, params any, out any) error {
	var data [][]byte
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return err
		}
		data = append(data, b)
	}
	r, err := o.client.Request(ctx, o.addr, cmd, data...)
	if err != nil {
		return fmt.Errorf("%s %s: %w", o.name, cmd, err)
	}
	if len(r) < 2 {
		return fmt.Errorf("%s %s: answer of %d parts", o.name, cmd, len(r))
	}
	if string(r[0]) != "200" {
		return fmt.Errorf("%s %s: status %s: %s", o.name, cmd, r[0], firstLine(r[1]))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(r[1], out); err != nil {
		return fmt.Errorf("%s %s: %w", o.name, cmd, err)
	}
	return nil
}

// Fetch implements Source: rpc.get_service_nodes with the §6.3 fields and
// poll_block_hash ("unchanged" costs oxend nothing).
func (o *OxendOMQ) Fetch(ctx context.Context) (Snapshot, bool, error) {
	var res GetServiceNodesResult
	if err := o.call(ctx, "rpc.get_service_nodes", o.poll.params(), &res); err != nil {
		return o.poll.lastSnapshot(), false, err
	}
	return o.poll.apply(o.name, res)
}

// ServiceNodeKeys are the node's keys as oxend holds them.
type ServiceNodeKeys struct {
	Legacy  [32]byte // primary (legacy) secret key
	Ed25519 [32]byte // Ed25519 seed (libsodium's secret key is seed ‖ public)
	X25519  [32]byte
}

// Keys asks oxend for the service node's keys. They are never logged.
func (o *OxendOMQ) Keys(ctx context.Context) (ServiceNodeKeys, error) {
	var k ServiceNodeKeys
	var r struct {
		Legacy  string `json:"service_node_privkey"`
		Ed25519 string `json:"service_node_ed25519_privkey"`
		X25519  string `json:"service_node_x25519_privkey"`
	}
	if err := o.call(ctx, "admin.get_service_node_privkey", nil, &r); err != nil {
		return k, err
	}
	if r.Legacy == "" {
		return k, fmt.Errorf("%s: oxend has no service node key (is it running in service-node mode?)", o.name)
	}
	for _, f := range []struct {
		hexs string
		dst  *[32]byte
		what string
	}{{r.Legacy, &k.Legacy, "legacy"}, {r.Ed25519, &k.Ed25519, "ed25519"}, {r.X25519, &k.X25519, "x25519"}} {
		b, err := hex.DecodeString(f.hexs)
		// The Ed25519 key comes as libsodium's 64 bytes (seed ‖ public).
		if err != nil || (len(b) != 32 && !(f.what == "ed25519" && len(b) == 64)) {
			return k, fmt.Errorf("%s: oxend's %s key is not 32 bytes of hex", o.name, f.what)
		}
		copy(f.dst[:], b[:32])
	}
	return k, nil
}

// PingInfo is what admin.storage_server_ping tells oxend (its uptime proofs
// carry it).
type PingInfo struct {
	Version   [3]int `json:"version"`
	Ed25519   string `json:"pubkey_ed25519"`
	HTTPSPort int    `json:"https_port"`
	OMQPort   int    `json:"omq_port"`
}

// Ping tells oxend the storage server is up; oxend answers {"status":"OK"}.
func (o *OxendOMQ) Ping(ctx context.Context, p PingInfo) error {
	var r struct {
		Status string `json:"status"`
	}
	err := o.call(ctx, "admin.storage_server_ping", p, &r)
	if err == nil && r.Status != "OK" {
		err = fmt.Errorf("%s: ping refused: %s", o.name, r.Status)
	}
	o.mu.Lock()
	if err == nil {
		o.pinged, o.pingErr = time.Now(), ""
	} else {
		o.pingErr = err.Error()
	}
	o.mu.Unlock()
	return err
}

// LastPing is when oxend last accepted a ping, and the last error.
func (o *OxendOMQ) LastPing() (time.Time, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pinged, o.pingErr
}

// Subscribe asks oxend for notify.block pushes (renew within 30 min).
func (o *OxendOMQ) Subscribe(ctx context.Context) error {
	r, err := o.client.Request(ctx, o.addr, "sub.block")
	if err != nil {
		return fmt.Errorf("%s sub.block: %w", o.name, err)
	}
	if len(r) == 0 || (string(r[0]) != "OK" && string(r[0]) != "ALREADY") {
		return fmt.Errorf("%s sub.block: answer %q", o.name, r)
	}
	return nil
}

// ReportPeer tells oxend whether a peer passed a reachability test.
func (o *OxendOMQ) ReportPeer(ctx context.Context, legacy [32]byte, passed bool) error {
	var r struct {
		Status string `json:"status"`
	}
	err := o.call(ctx, "admin.report_peer_status", map[string]any{"type": "storage", "pubkey": hex.EncodeToString(legacy[:]), "passed": passed}, &r)
	if err == nil && r.Status != "OK" {
		err = fmt.Errorf("%s: report refused: %s", o.name, r.Status)
	}
	return err
}
