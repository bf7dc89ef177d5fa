package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ServiceNodeFields are the §6.3 fields snodebox asks oxend for.
var ServiceNodeFields = []string{
	"service_node_pubkey", "swarm_id", "storage_port", "public_ip", "height", "block_hash",
	"hardfork", "snode_revision", "funded", "pubkey_x25519", "pubkey_ed25519",
	"storage_lmq_port", "storage_server_version",
}

// ServiceNodeState is one entry of oxend's service_node_states (only the
// fields snodebox reads or serves). Pointers distinguish "absent" from zero
// because a requester's field list decides what is present.
type ServiceNodeState struct {
	ServiceNodePubkey    string   `json:"service_node_pubkey,omitempty"`
	SwarmID              *uint64  `json:"swarm_id,omitempty"`
	StoragePort          *uint16  `json:"storage_port,omitempty"`
	StorageLMQPort       *uint16  `json:"storage_lmq_port,omitempty"`
	PublicIP             string   `json:"public_ip,omitempty"`
	PubkeyX25519         string   `json:"pubkey_x25519,omitempty"`
	PubkeyEd25519        string   `json:"pubkey_ed25519,omitempty"`
	Funded               *bool    `json:"funded,omitempty"`
	Active               *bool    `json:"active,omitempty"`
	StorageServerVersion []uint16 `json:"storage_server_version,omitempty"`
}

// GetServiceNodesResult is the "result" of get_service_nodes (and
// get_n_service_nodes) as oxend answers it.
type GetServiceNodesResult struct {
	Height            uint64             `json:"height"`
	BlockHash         string             `json:"block_hash"`
	Hardfork          int                `json:"hardfork"`
	SnodeRevision     int                `json:"snode_revision"`
	Unchanged         bool               `json:"unchanged,omitempty"`
	Status            string             `json:"status"`
	ServiceNodeStates []ServiceNodeState `json:"service_node_states"`
}

// JSONRPCRequest and JSONRPCResponse are the oxend /json_rpc envelope.
type JSONRPCRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

type JSONRPCResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *JSONRPCError   `json:"error,omitempty"`
}

type JSONRPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// NodeFromState converts one oxend entry. Nodes without both ed25519 and
// x25519 keys, or explicitly unfunded, are skipped as [2.8] does (ok=false).
func NodeFromState(st ServiceNodeState) (n Node, ok bool, err error) {
	if st.Funded != nil && !*st.Funded {
		return n, false, nil
	}
	if st.PubkeyEd25519 == "" || st.PubkeyX25519 == "" {
		return n, false, nil
	}
	if err := hex32(st.PubkeyEd25519, &n.Ed25519); err != nil {
		return n, false, fmt.Errorf("pubkey_ed25519: %w", err)
	}
	if err := hex32(st.PubkeyX25519, &n.X25519); err != nil {
		return n, false, fmt.Errorf("pubkey_x25519: %w", err)
	}
	n.Legacy = n.Ed25519
	if st.ServiceNodePubkey != "" {
		if err := hex32(st.ServiceNodePubkey, &n.Legacy); err != nil {
			return n, false, fmt.Errorf("service_node_pubkey: %w", err)
		}
	}
	n.SwarmID = NoSwarm
	if st.SwarmID != nil {
		n.SwarmID = *st.SwarmID
	}
	if st.PublicIP != "" {
		ip, err := netip.ParseAddr(st.PublicIP)
		if err != nil {
			return n, false, fmt.Errorf("public_ip %q: %w", st.PublicIP, err)
		}
		if !ip.IsUnspecified() {
			n.IP = ip.Unmap()
		}
	}
	if st.StoragePort != nil {
		n.HTTPSPort = *st.StoragePort
	}
	if st.StorageLMQPort != nil {
		n.OMQPort = *st.StorageLMQPort
	}
	copy(n.Version[:], st.StorageServerVersion)
	return n, true, nil
}

// StateFromNode is the reverse, with every field present.
func StateFromNode(n Node) ServiceNodeState {
	swarm, https, omq, funded := n.SwarmID, n.HTTPSPort, n.OMQPort, true
	active := n.SwarmID != NoSwarm
	ip := "0.0.0.0"
	if n.IP.IsValid() {
		ip = n.IP.String()
	}
	return ServiceNodeState{
		ServiceNodePubkey: hex.EncodeToString(n.Legacy[:]),
		SwarmID:           &swarm, StoragePort: &https, StorageLMQPort: &omq,
		PublicIP:             ip,
		PubkeyX25519:         hex.EncodeToString(n.X25519[:]),
		PubkeyEd25519:        hex.EncodeToString(n.Ed25519[:]),
		Funded:               &funded,
		Active:               &active,
		StorageServerVersion: n.Version[:],
	}
}

func hex32(s string, out *[32]byte) error {
	b, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	if len(b) != 32 {
		return fmt.Errorf("%d bytes, want 32", len(b))
	}
	copy(out[:], b)
	return nil
}

// Oxend polls a Session node daemon's JSON-RPC get_service_nodes (spec
// §6.3) over HTTP(S). oxend's certificates are self-signed, so TLS is not
// verified: the same trust the reference server places in its oxend socket.
type Oxend struct {
	url    string // base URL; requests go to url + "/json_rpc"
	name   string
	client *http.Client
	poll   blockPoll
}

// blockPoll is the get_service_nodes polling both oxend sources share: the
// fields asked for, poll_block_hash from the last answer, and the
// snapshot an "unchanged" answer stands for.
type blockPoll struct {
	mu       sync.Mutex
	last     Snapshot
	lastHash string
	have     bool
}

// params are get_service_nodes' parameters for the next poll.
func (p *blockPoll) params() map[string]any {
	fields := map[string]bool{}
	for _, f := range ServiceNodeFields {
		fields[f] = true
	}
	params := map[string]any{"fields": fields, "active_only": false}
	p.mu.Lock()
	if p.have {
		params["poll_block_hash"] = p.lastHash
	}
	p.mu.Unlock()
	return params
}

// apply turns an answer into the snapshot and whether it changed.
func (p *blockPoll) apply(name string, res GetServiceNodesResult) (Snapshot, bool, error) {
	p.mu.Lock()
	have := p.have
	p.mu.Unlock()
	if res.Unchanged && have {
		return p.lastSnapshot(), false, nil
	}
	snap := Snapshot{Height: res.Height, BlockHash: res.BlockHash, Hardfork: [2]int{res.Hardfork, res.SnodeRevision}}
	for i, st := range res.ServiceNodeStates {
		n, ok, err := NodeFromState(st)
		if err != nil {
			return p.lastSnapshot(), false, fmt.Errorf("%s: service node %d: %w", name, i, err)
		}
		if ok {
			snap.Nodes = append(snap.Nodes, n)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := !p.have || res.BlockHash != p.lastHash
	p.last, p.lastHash, p.have = snap, res.BlockHash, true
	return snap, changed, nil
}

func (p *blockPoll) lastSnapshot() Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// NewOxend makes an oxend source for baseURL (e.g. "http://127.0.0.1:22023").
// client nil means a default client with a 10 s timeout.
func NewOxend(baseURL string, client *http.Client) *Oxend {
	if client == nil {
		client = InsecureClient(10 * time.Second)
	}
	return &Oxend{url: strings.TrimSuffix(baseURL, "/"), name: "oxend:" + baseURL, client: client}
}

// InsecureClient talks HTTPS to nodes and daemons whose certificates are
// self-signed (Session nodes never present CA-signed certificates).
func InsecureClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	tr.MaxIdleConnsPerHost = 4
	return &http.Client{Timeout: timeout, Transport: tr}
}

// Name implements Source.
func (o *Oxend) Name() string { return o.name }

// Fetch implements Source: get_service_nodes with poll_block_hash, so an
// unchanged network costs oxend almost nothing and returns changed=false.
func (o *Oxend) Fetch(ctx context.Context) (Snapshot, bool, error) {
	var res GetServiceNodesResult
	if err := CallJSONRPC(ctx, o.client, o.url, "get_service_nodes", o.poll.params(), &res); err != nil {
		return o.poll.lastSnapshot(), false, err
	}
	return o.poll.apply(o.name, res)
}

// CallJSONRPC POSTs one oxend-style JSON-RPC call to baseURL/json_rpc and
// decodes its result into out.
func CallJSONRPC(ctx context.Context, client *http.Client, baseURL, method string, params any, out any) error {
	p, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("%s params: %w", method, err)
	}
	body, _ := json.Marshal(JSONRPCRequest{JSONRPC: "2.0", ID: json.RawMessage("0"), Method: method, Params: p})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/json_rpc", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, baseURL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, baseURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, baseURL, resp.StatusCode, firstLine(raw))
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  *JSONRPCError   `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%s %s: bad JSON answer: %w", method, baseURL, err)
	}
	if env.Error != nil {
		return fmt.Errorf("%s %s: error %d: %s", method, baseURL, env.Error.Code, env.Error.Message)
	}
	if len(env.Result) == 0 {
		return errors.New(method + ": answer has no result")
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return fmt.Errorf("%s %s: bad result: %w", method, baseURL, err)
	}
	return nil
}

func firstLine(b []byte) string {
	s := string(b)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
