package registry

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/netstack/identity"
)

// Devnet registry: nodes announce themselves with signed, timestamped
// records (like oxend uptime proofs); the registry assigns swarms
// (AssignSwarms) and answers oxend's JSON-RPC so nodes (DevnetSource) and
// Session clients (get_n_service_nodes seed calls) can read it.
//
// Wire format, on the HTTPS listener of the snoded started with
// --serve-registry:
//
//	POST /devnet/v1/announce  {"record": hex, "signature": hex}
//	    record = "snodebox-devnet-announce-v1" ‖ bencode{ed, ip, sh, sq, t, v, x}
//	    (ed/x: 32-byte keys, ip: text, sh/sq: HTTPS/OMQ ports, t: unix ms,
//	    v: [major, minor, patch]); signature: Ed25519 by ed over record.
//	    200 {"status":"OK"}, or 403 with the reason (bad signature, x not
//	    derived from ed, timestamp more than 60 s off or not newer than the
//	    node's previous record).
//	POST /json_rpc  get_service_nodes / get_n_service_nodes, oxend's params
//	    (fields as list or dict, active_only, poll_block_hash, limit) and
//	    answer shape.
//
// Nodes re-announce every 2 s and are dropped after 10 s of silence. Every
// change of membership or contact details is a new "block": height + 1 and
// a block_hash over the node list, so poll_block_hash works as with oxend.
const (
	// AnnouncePath is where records are POSTed (JSON {"record","signature"}, hex).
	AnnouncePath = "/devnet/v1/announce"
	// JSONRPCPath serves get_service_nodes / get_n_service_nodes.
	JSONRPCPath = "/json_rpc"

	// DefaultAnnounceEvery and DefaultRecordTTL: a node that has not
	// re-announced for the TTL (a few missed announcements) is dropped.
	DefaultAnnounceEvery = 2 * time.Second
	DefaultRecordTTL     = 10 * time.Second
	// RecordClockSkew bounds how far a record's timestamp may be from the
	// registry's clock (the spec's ±60 s signature tolerance).
	RecordClockSkew = 60 * time.Second

	announceDomain = "snodebox-devnet-announce-v1"
)

// Record is what a node announces about itself.
type Record struct {
	Node      Node  // keys, IP, ports, version; SwarmID is ignored
	Timestamp int64 // unix ms
}

// Canonical is the signed encoding: a domain tag followed by the bencoded
// dict {ed, ip, sh, sq, t, v, x} (keys sorted by bencode).
func (r Record) Canonical() []byte {
	ip := ""
	if r.Node.IP.IsValid() {
		ip = r.Node.IP.String()
	}
	d := map[string]any{
		"ed": r.Node.Ed25519[:],
		"x":  r.Node.X25519[:],
		"ip": ip,
		"sh": int64(r.Node.HTTPSPort),
		"sq": int64(r.Node.OMQPort),
		"t":  r.Timestamp,
		"v":  []int64{int64(r.Node.Version[0]), int64(r.Node.Version[1]), int64(r.Node.Version[2])},
	}
	return append([]byte(announceDomain), bencode.MustMarshal(d)...)
}

// SignedRecord is the announcement on the wire.
type SignedRecord struct {
	Record    string `json:"record"`    // hex of Canonical()
	Signature string `json:"signature"` // hex Ed25519 signature of Canonical()
}

// SignRecord signs r with the node's identity (which must match r.Node).
func SignRecord(keys *identity.Keys, r Record) SignedRecord {
	c := r.Canonical()
	return SignedRecord{Record: hex.EncodeToString(c), Signature: hex.EncodeToString(keys.Sign(c))}
}

// ParseRecord decodes and verifies a SignedRecord: the signature must be by
// the record's own ed25519 key and the x25519 key must be the one derived
// from it (snodebox identities always are).
func ParseRecord(sr SignedRecord) (Record, error) {
	var r Record
	c, err := hex.DecodeString(sr.Record)
	if err != nil {
		return r, fmt.Errorf("record is not hex: %w", err)
	}
	sig, err := hex.DecodeString(sr.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return r, errors.New("signature must be 64 hex-encoded bytes")
	}
	if !bytes.HasPrefix(c, []byte(announceDomain)) {
		return r, errors.New("record lacks the announce domain tag")
	}
	v, err := bencode.Unmarshal(c[len(announceDomain):])
	if err != nil {
		return r, fmt.Errorf("record: %w", err)
	}
	d, err := bencode.AsDict(v)
	if err != nil {
		return r, fmt.Errorf("record: %w", err)
	}
	ed, _, err := d.Bytes("ed")
	if err != nil || len(ed) != 32 {
		return r, errors.New("record: ed must be 32 bytes")
	}
	x, _, err := d.Bytes("x")
	if err != nil || len(x) != 32 {
		return r, errors.New("record: x must be 32 bytes")
	}
	if !ed25519.Verify(ed25519.PublicKey(ed), c, sig) {
		return r, errors.New("record: bad signature")
	}
	wantX, err := identity.EdPubToX25519(ed)
	if err != nil {
		return r, fmt.Errorf("record: %w", err)
	}
	if !bytes.Equal(wantX[:], x) {
		return r, errors.New("record: x25519 key does not belong to the ed25519 key")
	}
	ipb, _, err := d.Bytes("ip")
	if err != nil {
		return r, fmt.Errorf("record: %w", err)
	}
	ip, err := netip.ParseAddr(string(ipb))
	if err != nil || ip.IsUnspecified() {
		return r, fmt.Errorf("record: ip %q is not a usable address", ipb)
	}
	sh, _, err1 := d.Int("sh")
	sq, _, err2 := d.Int("sq")
	t, tok, err3 := d.Int("t")
	if err := errors.Join(err1, err2, err3); err != nil || !tok {
		return r, fmt.Errorf("record: ports and timestamp: %v", err)
	}
	if sh <= 0 || sh > 65535 || sq < 0 || sq > 65535 {
		return r, errors.New("record: port out of range")
	}
	vl, _, err := d.List("v")
	if err != nil || len(vl) != 3 {
		return r, errors.New("record: v must be [major, minor, patch]")
	}
	for i, e := range vl {
		n, ok := e.(int64)
		if !ok || n < 0 || n > 65535 {
			return r, errors.New("record: bad version number")
		}
		r.Node.Version[i] = uint16(n)
	}
	copy(r.Node.Ed25519[:], ed)
	copy(r.Node.X25519[:], x)
	r.Node.Legacy = r.Node.Ed25519
	r.Node.IP = ip.Unmap()
	r.Node.HTTPSPort = uint16(sh)
	r.Node.OMQPort = uint16(sq)
	r.Node.SwarmID = NoSwarm
	r.Timestamp = t
	return r, nil
}

// DevnetRegistry is the server side: it keeps the announced nodes, expires
// silent ones, assigns swarms and serves the oxend-compatible JSON-RPC.
type DevnetRegistry struct {
	ttl time.Duration
	now func() time.Time
	log *slog.Logger

	statePath string
	warmUntil time.Time

	mu     sync.Mutex
	nodes  map[[32]byte]Record
	assign map[[32]byte]uint64 // live nodes
	// remembered is the last swarm of every node seen, live or not: it is
	// what AssignSwarms starts from, so a node that comes back (or a whole
	// network after a registry restart) returns to the swarm it had.
	remembered map[[32]byte]uint64
	height     uint64
	hash       string
	dirty      bool // announcements during warm-up not assigned yet
}

// MaxDevnetNodes bounds the registry's memory whatever announces to it.
const MaxDevnetNodes = 10_000

// DevnetOptions tune a DevnetRegistry; zero values are defaults.
type DevnetOptions struct {
	TTL    time.Duration
	Now    func() time.Time
	Logger *slog.Logger
	// StatePath keeps swarm assignments across registry restarts ("" =
	// memory only).
	StatePath string
	// WarmUp: after a restart with saved state the registry answers
	// get_service_nodes with an error until the nodes have had time to
	// re-announce, so no node mistakes a half-empty list for its swarm
	// dissolving (default: two announce periods plus a second).
	WarmUp time.Duration
}

// NewDevnetRegistry makes an empty registry.
func NewDevnetRegistry(opts DevnetOptions) *DevnetRegistry {
	if opts.TTL <= 0 {
		opts.TTL = DefaultRecordTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.WarmUp <= 0 {
		opts.WarmUp = 2*DefaultAnnounceEvery + time.Second
	}
	g := &DevnetRegistry{ttl: opts.TTL, now: opts.Now, log: opts.Logger, statePath: opts.StatePath,
		nodes: map[[32]byte]Record{}, assign: map[[32]byte]uint64{}, remembered: map[[32]byte]uint64{}}
	if opts.StatePath != "" {
		if n, err := g.load(); err != nil {
			g.log.Warn("devnet registry state not loaded; starting fresh", "path", opts.StatePath, "err", err)
		} else if n > 0 {
			g.warmUntil = opts.Now().Add(opts.WarmUp)
			g.log.Info("devnet registry state loaded; waiting for announcements", "nodes", n, "warm_up", opts.WarmUp)
		}
	}
	g.recompute()
	return g
}

type savedState struct {
	Height uint64            `json:"height"`
	Swarms map[string]uint64 `json:"swarms"` // ed25519 hex → swarm id
}

func (g *DevnetRegistry) load() (int, error) {
	b, err := os.ReadFile(g.statePath)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, err
	}
	for k, id := range st.Swarms {
		var key [32]byte
		if hex32(k, &key) == nil {
			g.remembered[key] = id
		}
	}
	g.height = st.Height
	return len(g.remembered), nil
}

// save writes the assignment atomically. Caller holds mu.
func (g *DevnetRegistry) save() {
	if g.statePath == "" {
		return
	}
	st := savedState{Height: g.height, Swarms: map[string]uint64{}}
	for k, id := range g.remembered {
		st.Swarms[hex.EncodeToString(k[:])] = id
	}
	b, _ := json.Marshal(st)
	tmp := g.statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		g.log.Warn("save devnet registry state", "err", err)
		return
	}
	if err := os.Rename(tmp, g.statePath); err != nil {
		g.log.Warn("save devnet registry state", "err", err)
	}
}

// warming reports whether the registry still waits for re-announcements.
func (g *DevnetRegistry) warming() bool { return g.now().Before(g.warmUntil) }

// Announce accepts a signed record. Records must be fresh (within
// RecordClockSkew of our clock) and newer than the node's last one, so a
// replayed record cannot resurrect a node or move it back to an old address.
func (g *DevnetRegistry) Announce(sr SignedRecord) error {
	r, err := ParseRecord(sr)
	if err != nil {
		return err
	}
	now := g.now()
	ts := time.UnixMilli(r.Timestamp)
	if ts.Before(now.Add(-RecordClockSkew)) || ts.After(now.Add(RecordClockSkew)) {
		return fmt.Errorf("record timestamp %s is more than %s from the registry clock %s", ts.UTC().Format(time.RFC3339), RecordClockSkew, now.UTC().Format(time.RFC3339))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old, known := g.nodes[r.Node.Ed25519]
	if !known && len(g.nodes) >= MaxDevnetNodes {
		return fmt.Errorf("devnet registry is full (%d nodes)", MaxDevnetNodes)
	}
	if known && r.Timestamp <= old.Timestamp {
		return fmt.Errorf("record timestamp %d is not newer than the last one (%d)", r.Timestamp, old.Timestamp)
	}
	g.nodes[r.Node.Ed25519] = r
	if !known || contactChanged(old.Node, r.Node) {
		g.log.Info("devnet node announced", "node", r.Node.String(), "new", !known)
		if g.warming() {
			// Assigning now, from a partial list, would move nodes away
			// from the swarms they are coming back to.
			g.dirty = true
		} else {
			g.recompute()
		}
	}
	return nil
}

func contactChanged(a, b Node) bool {
	return a.IP != b.IP || a.HTTPSPort != b.HTTPSPort || a.OMQPort != b.OMQPort || a.Version != b.Version
}

// expire drops nodes whose last record is older than the TTL. Caller holds mu.
func (g *DevnetRegistry) expire() {
	cut := g.now().Add(-g.ttl).UnixMilli()
	dropped := false
	for k, r := range g.nodes {
		if r.Timestamp < cut {
			g.log.Info("devnet node expired", "node", r.Node.String())
			delete(g.nodes, k)
			dropped = true
		}
	}
	if dropped {
		if g.warming() {
			g.dirty = true
		} else {
			g.recompute()
		}
	}
}

// recompute reassigns swarms and moves to a new "block". Caller holds mu.
func (g *DevnetRegistry) recompute() {
	live := make([][32]byte, 0, len(g.nodes))
	for k := range g.nodes {
		live = append(live, k)
	}
	prev := make(map[[32]byte]uint64, len(live))
	for _, k := range live {
		if id, ok := g.remembered[k]; ok {
			prev[k] = id
		}
	}
	g.assign = AssignSwarms(prev, live)
	for k, id := range g.assign {
		g.remembered[k] = id
	}
	if len(g.remembered) > 2*MaxDevnetNodes {
		for k := range g.remembered {
			if _, live := g.nodes[k]; !live {
				delete(g.remembered, k)
			}
		}
	}
	g.height++
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], g.height)
	h.Write(b[:])
	for _, n := range g.snapshotLocked().Nodes {
		h.Write(n.Ed25519[:])
		binary.BigEndian.PutUint64(b[:], n.SwarmID)
		h.Write(b[:])
		h.Write([]byte(n.HTTPSAddr()))
	}
	g.hash = hex.EncodeToString(h.Sum(nil))
	g.save()
}

func (g *DevnetRegistry) snapshotLocked() Snapshot {
	s := Snapshot{Height: g.height, BlockHash: g.hash, Hardfork: [2]int{19, 6}}
	for k, r := range g.nodes {
		n := r.Node
		n.SwarmID = g.assign[k]
		s.Nodes = append(s.Nodes, n)
	}
	slices.SortFunc(s.Nodes, func(a, b Node) int { return bytes.Compare(a.Ed25519[:], b.Ed25519[:]) })
	return s
}

// Snapshot is the registry's current network.
func (g *DevnetRegistry) Snapshot() Snapshot {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire()
	if g.dirty && !g.warming() {
		g.dirty = false
		g.recompute()
	}
	return g.snapshotLocked()
}

// ServeHTTP serves POST /json_rpc and POST /devnet/v1/announce.
func (g *DevnetRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch r.URL.Path {
	case AnnouncePath:
		var sr SignedRecord
		if err := json.Unmarshal(body, &sr); err != nil {
			http.Error(w, "announce: bad JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := g.Announce(sr); err != nil {
			http.Error(w, "announce: "+err.Error(), http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"OK"}`))
	case JSONRPCPath:
		g.serveJSONRPC(w, body)
	default:
		http.NotFound(w, r)
	}
}

func (g *DevnetRegistry) serveJSONRPC(w http.ResponseWriter, body []byte) {
	var req JSONRPCRequest
	resp := JSONRPCResponse{JSONRPC: "2.0", ID: json.RawMessage("0")}
	w.Header().Set("Content-Type", "application/json")
	if err := json.Unmarshal(body, &req); err != nil {
		resp.Error = &JSONRPCError{Code: -32700, Message: "parse error: " + err.Error()}
		json.NewEncoder(w).Encode(resp)
		return
	}
	if len(req.ID) > 0 {
		resp.ID = req.ID
	}
	var params struct {
		Fields        json.RawMessage `json:"fields"`
		ActiveOnly    bool            `json:"active_only"`
		PollBlockHash string          `json:"poll_block_hash"`
		Limit         int             `json:"limit"`
	}
	if len(req.Params) > 0 {
		if err := json.Unmarshal(req.Params, &params); err != nil {
			resp.Error = &JSONRPCError{Code: -32602, Message: "invalid params: " + err.Error()}
			json.NewEncoder(w).Encode(resp)
			return
		}
	}
	switch req.Method {
	case "get_service_nodes", "get_n_service_nodes":
		if g.warming() {
			resp.Error = &JSONRPCError{Code: -32000, Message: "devnet registry restarted; waiting for nodes to re-announce"}
			break
		}
		fields, err := parseFields(params.Fields)
		if err != nil {
			resp.Error = &JSONRPCError{Code: -32602, Message: err.Error()}
			break
		}
		snap := g.Snapshot()
		res := GetServiceNodesResult{Height: snap.Height, BlockHash: snap.BlockHash, Hardfork: snap.Hardfork[0], SnodeRevision: snap.Hardfork[1], Status: "OK"}
		if params.PollBlockHash != "" && params.PollBlockHash == snap.BlockHash {
			res.Unchanged = true
			res.ServiceNodeStates = []ServiceNodeState{}
			resp.Result = res
			break
		}
		res.ServiceNodeStates = []ServiceNodeState{}
		for _, n := range snap.Nodes {
			if params.ActiveOnly && n.SwarmID == NoSwarm {
				continue
			}
			res.ServiceNodeStates = append(res.ServiceNodeStates, filterFields(StateFromNode(n), fields))
		}
		if params.Limit > 0 && len(res.ServiceNodeStates) > params.Limit {
			res.ServiceNodeStates = res.ServiceNodeStates[:params.Limit]
		}
		resp.Result = res
	default:
		resp.Error = &JSONRPCError{Code: -32601, Message: "Method not found: " + req.Method}
	}
	json.NewEncoder(w).Encode(resp)
}

// parseFields accepts both forms of oxend's "fields": a dict {name: true}
// ([2.8] storage server, Session Desktop) or a list of names (newer). nil
// means every field.
func parseFields(raw json.RawMessage) (map[string]bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var asList []string
	if err := json.Unmarshal(raw, &asList); err == nil {
		m := map[string]bool{}
		for _, f := range asList {
			m[f] = true
		}
		return m, nil
	}
	var asDict map[string]bool
	if err := json.Unmarshal(raw, &asDict); err != nil {
		return nil, errors.New("fields must be a list of names or a dict of name: bool")
	}
	return asDict, nil
}

// stateFields copies each of oxend's "fields" names from one
// ServiceNodeState to another (the name is the field's JSON key).
var stateFields = map[string]func(dst, src *ServiceNodeState){
	"service_node_pubkey":    func(d, s *ServiceNodeState) { d.ServiceNodePubkey = s.ServiceNodePubkey },
	"swarm_id":               func(d, s *ServiceNodeState) { d.SwarmID = s.SwarmID },
	"storage_port":           func(d, s *ServiceNodeState) { d.StoragePort = s.StoragePort },
	"storage_lmq_port":       func(d, s *ServiceNodeState) { d.StorageLMQPort = s.StorageLMQPort },
	"public_ip":              func(d, s *ServiceNodeState) { d.PublicIP = s.PublicIP },
	"pubkey_x25519":          func(d, s *ServiceNodeState) { d.PubkeyX25519 = s.PubkeyX25519 },
	"pubkey_ed25519":         func(d, s *ServiceNodeState) { d.PubkeyEd25519 = s.PubkeyEd25519 },
	"funded":                 func(d, s *ServiceNodeState) { d.Funded = s.Funded },
	"active":                 func(d, s *ServiceNodeState) { d.Active = s.Active },
	"storage_server_version": func(d, s *ServiceNodeState) { d.StorageServerVersion = s.StorageServerVersion },
}

// filterFields keeps the fields asked for (nil: all of them); names oxend
// does not know are ignored, as oxend does.
func filterFields(st ServiceNodeState, fields map[string]bool) ServiceNodeState {
	if fields == nil {
		return st
	}
	var out ServiceNodeState
	for name, copyField := range stateFields {
		if fields[name] {
			copyField(&out, &st)
		}
	}
	return out
}

// DevnetSource is a node's view of a devnet registry: it announces the
// node's signed record every AnnounceEvery and reads the network with the
// same get_service_nodes polling as Oxend.
type DevnetSource struct {
	base    string
	self    Node
	keys    *identity.Keys
	client  *http.Client
	oxend   *Oxend
	every   time.Duration
	now     func() time.Time
	mu      sync.Mutex
	lastAnn time.Time
	lastTS  int64
}

// NewDevnetSource makes the source for "devnet:baseURL". self is the node's
// published record (keys must be its identity).
func NewDevnetSource(baseURL string, keys *identity.Keys, self Node, client *http.Client) *DevnetSource {
	if client == nil {
		client = InsecureClient(5 * time.Second)
	}
	base := strings.TrimSuffix(baseURL, "/")
	o := NewOxend(base, client)
	o.name = "devnet:" + base
	return &DevnetSource{base: base, self: self, keys: keys, client: client, oxend: o, every: DefaultAnnounceEvery, now: time.Now}
}

// Name implements Source.
func (d *DevnetSource) Name() string { return "devnet:" + d.base }

// PollInterval tells the swarm to poll a devnet faster than oxend.
func (d *DevnetSource) PollInterval() time.Duration { return time.Second }

// Announce sends the node's record now.
func (d *DevnetSource) Announce(ctx context.Context) error {
	d.mu.Lock()
	ts := d.now().UnixMilli()
	if ts <= d.lastTS { // strictly increasing even within one millisecond
		ts = d.lastTS + 1
	}
	d.lastTS = ts
	d.mu.Unlock()
	sr := SignRecord(d.keys, Record{Node: d.self, Timestamp: ts})
	body, _ := json.Marshal(sr)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+AnnouncePath, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("announce to %s: %w", d.base, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("announce to %s: %w", d.base, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("announce to %s: HTTP %d: %s", d.base, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	d.mu.Lock()
	d.lastAnn = d.now()
	d.mu.Unlock()
	return nil
}

// Fetch implements Source: re-announce when due, then poll.
func (d *DevnetSource) Fetch(ctx context.Context) (Snapshot, bool, error) {
	d.mu.Lock()
	due := d.now().Sub(d.lastAnn) >= d.every
	d.mu.Unlock()
	var annErr error
	if due {
		annErr = d.Announce(ctx)
	}
	snap, changed, err := d.oxend.Fetch(ctx)
	if err != nil {
		return snap, false, errors.Join(err, annErr)
	}
	return snap, changed, annErr
}
