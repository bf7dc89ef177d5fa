// Package swarm follows network membership: which swarm this node is in,
// which swarm owns an account (spec §6.1), replication of recursive writes to
// swarm members (§6.4), pushes on membership change (§6.5, §6.6) and
// reachability tests (§7.1).
//
// Life of a message across membership changes:
//   - A write reaches every member through Replicate; a member that cannot
//     be reached gets the write queued and retried (stores are re-sent as
//     sn.data deliveries, which never expire out of signature tolerance).
//   - A member new to our swarm is "pending": we send it data_ready
//     {"t": 0} until it agrees it is in our swarm, then dump our swarm space
//     to it in ~1 MB sn.data batches (resumable: acknowledged hashes are
//     skipped on retry).
//   - A node that starts (or restarts) asks every member for their copy
//     with data_ready {"t": 1}, catching up on what it missed while down.
//   - Messages outside our swarm space (new swarms appeared, ours moved or
//     dissolved) are evacuated: pushed to every member of the swarm that now
//     owns them, and dropped only after all of them acknowledged. Until
//     then we keep serving those accounts, so nothing is unreachable during
//     the handover.
package swarm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/rpc"
)

// Config wires a Swarm.
type Config struct {
	Keys      *identity.Keys
	Self      registry.Node // this node's published record (IP, ports, keys)
	Source    registry.Source
	Transport peer.Transport
	Store     storage.Store
	Logger    *slog.Logger

	// PollInterval is how often the registry is read; 0 = the source's own
	// PollInterval() when it has one (devnet: 1 s), else 5 s.
	PollInterval time.Duration
	// ForwardTimeout bounds each storage_cc forward (spec §12: 5 s).
	ForwardTimeout time.Duration
	// MaintainInterval paces retries, data_ready handshakes and dumps (1 s).
	MaintainInterval time.Duration
	// HandshakeInterval is the data_ready resend period (spec: 10 s; 2 s
	// by default here, handshakes are tiny).
	HandshakeInterval time.Duration
	// Reachability tests (§7.1); see reach.go.
	Reach ReachConfig
	// ReportPeer, when set, hears every reachability result (oxend's
	// admin.report_peer_status, which feeds its decommission votes).
	ReportPeer func(n registry.Node, reachable bool)
	Now        func() time.Time
}

// Version is ProtocolVersion as the MMmmpp integer of data_ready.
var Version = int64(rpc.ProtocolVersion[0]*10000 + rpc.ProtocolVersion[1]*100 + rpc.ProtocolVersion[2])

// Swarm implements rpc.Swarm.
type Swarm struct {
	cfg Config
	log *slog.Logger
	// refresh asks Run to read the registry now.
	refresh chan struct{}

	mu       sync.RWMutex
	snap     registry.Snapshot
	have     bool // a snapshot arrived
	ring     Ring
	ourID    uint64
	members  []registry.Node // our swarm, ourselves included, sorted by key
	lower    uint64          // our space (lower, upper]
	upper    uint64
	retained []span // old spaces we still serve until evacuated
	fetchErr error
	evacGen  int // bumped on every change that needs an evacuation

	qmu     sync.Mutex
	queues  map[[32]byte]*memberQueue
	pending map[[32]byte]*handshake // members owed a dump after data_ready t=0
	asks    map[[32]byte]*handshake // members we ask for their copy (t=1)
	dumps   map[[32]byte]*dumpState // dumps to a member, resumable

	evacMu      sync.Mutex
	evacDone    int // evacGen that completed
	evacRunning bool
	evacNext    time.Time
	evacFail    int

	reach *reacher
	kick  chan struct{}

	ctxMu   sync.Mutex
	baseCtx context.Context

	fetchFailures int // consecutive, for log pacing (poll goroutine only)
}

// runCtx is Run's context: background work (dumps) stops with the node.
func (s *Swarm) runCtx() context.Context {
	s.ctxMu.Lock()
	defer s.ctxMu.Unlock()
	if s.baseCtx == nil {
		return context.Background()
	}
	return s.baseCtx
}

type span struct{ lower, upper uint64 }

var _ rpc.Swarm = (*Swarm)(nil)

// New makes a Swarm; call Run to follow the registry.
func New(cfg Config) *Swarm {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = 5 * time.Second
	}
	if cfg.MaintainInterval <= 0 {
		cfg.MaintainInterval = time.Second
	}
	if cfg.HandshakeInterval <= 0 {
		cfg.HandshakeInterval = 2 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
		if p, ok := cfg.Source.(interface{ PollInterval() time.Duration }); ok && p.PollInterval() > 0 {
			cfg.PollInterval = p.PollInterval()
		}
	}
	self := cfg.Self
	self.SwarmID = registry.NoSwarm
	s := &Swarm{refresh: make(chan struct{}, 1),
		cfg: cfg, log: cfg.Logger,
		snap:    registry.Snapshot{Nodes: []registry.Node{self}},
		ourID:   registry.NoSwarm,
		queues:  map[[32]byte]*memberQueue{},
		pending: map[[32]byte]*handshake{},
		asks:    map[[32]byte]*handshake{},
		dumps:   map[[32]byte]*dumpState{},
		kick:    make(chan struct{}, 1),
	}
	s.reach = newReacher(s, cfg.Reach)
	return s
}

// Register installs the peer commands the swarm serves (data, data_ready).
func (s *Swarm) Register(m peer.Mux) {
	m.Handle(peer.CmdData, s.HandleData)
	m.Handle(peer.CmdDataReady, s.HandleDataReady)
}

// Run polls the registry and reacts to membership changes until ctx ends.
func (s *Swarm) Run(ctx context.Context) error {
	s.ctxMu.Lock()
	s.baseCtx = ctx
	s.ctxMu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.maintain(ctx) }()
	go func() { defer wg.Done(); s.reach.run(ctx) }()
	defer wg.Wait()

	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		s.poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.refresh:
		}
	}
}

// Refresh makes Run read the registry now (oxend announced a new block).
func (s *Swarm) Refresh() {
	select {
	case s.refresh <- struct{}{}:
	default:
	}
}

func (s *Swarm) poll(ctx context.Context) {
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	snap, changed, err := s.cfg.Source.Fetch(fctx)
	cancel()
	s.mu.Lock()
	s.fetchErr = err
	first := !s.have && err == nil
	s.mu.Unlock()
	if err != nil {
		// A registry that is down for a while must not flood the log
		// ring: the first failure and then one in thirty.
		if s.fetchFailures%30 == 0 && ctx.Err() == nil {
			s.log.Warn("registry fetch", "source", s.cfg.Source.Name(), "err", err, "failures", s.fetchFailures+1)
		}
		s.fetchFailures++
		// A devnet answer can carry an announce error next to a good
		// snapshot; a changed snapshot is still news.
		if !changed {
			return
		}
	}
	if err == nil {
		if s.fetchFailures > 0 {
			s.log.Info("registry reachable again", "source", s.cfg.Source.Name(), "after_failures", s.fetchFailures)
		}
		s.fetchFailures = 0
	}
	if changed || first {
		s.Apply(snap)
	}
}

// Apply installs a new network snapshot and starts what membership changes
// require. Run calls it; tests may call it directly.
func (s *Swarm) Apply(snap registry.Snapshot) {
	ring := NewRing(snap.Nodes)
	self := s.cfg.Self.Ed25519
	newID := ring.SwarmOf(self)
	var members []registry.Node
	var lower, upper uint64
	if newID != registry.NoSwarm {
		members = ring.Members[newID]
		lower, upper = SwarmSpace(ring.IDs, newID)
	}

	s.mu.Lock()
	first := !s.have
	oldID, oldMembers := s.ourID, s.members
	oldLower, oldUpper := s.lower, s.upper
	spaceChanged := first || newID != oldID || lower != oldLower || upper != oldUpper
	if spaceChanged && !first && oldID != registry.NoSwarm {
		// Keep serving what we held until it is handed over.
		s.retained = append(s.retained, span{oldLower, oldUpper})
	}
	s.snap, s.have, s.ring = snap, true, ring
	s.ourID, s.members, s.lower, s.upper = newID, members, lower, upper
	if spaceChanged {
		s.evacGen++
	}
	s.mu.Unlock()

	if newID != oldID || first {
		s.log.Info("swarm membership", "swarm", hexID(newID), "members", len(members), "swarms", len(ring.IDs), "height", snap.Height)
	}

	now := s.cfg.Now()
	isMember := map[[32]byte]bool{}
	for _, m := range members {
		isMember[m.Ed25519] = true
	}
	wasMember := map[[32]byte]bool{}
	for _, m := range oldMembers {
		wasMember[m.Ed25519] = true
	}
	s.qmu.Lock()
	if first && newID != registry.NoSwarm {
		// (Re)started inside a swarm: we may have missed writes while down.
		for _, m := range copySources(members, self) {
			s.asks[m.Ed25519] = &handshake{node: m, next: now}
		}
	}
	if !first && newID == oldID {
		for _, m := range members {
			if m.Ed25519 == self || wasMember[m.Ed25519] {
				continue
			}
			// A new member: owe it our copy once it agrees it is one of
			// us, if we are one of those who send it.
			for _, src := range copySources(members, m.Ed25519) {
				if src.Ed25519 == self {
					s.pending[m.Ed25519] = &handshake{node: m, next: now}
				}
			}
		}
	}
	// Forget work for nodes no longer in our swarm: what they were owed is
	// now the business of their new swarm (and our evacuation).
	for k := range s.pending {
		if !isMember[k] {
			delete(s.pending, k)
		}
	}
	for k := range s.asks {
		if !isMember[k] {
			delete(s.asks, k)
		}
	}
	for k, d := range s.dumps {
		if !isMember[k] {
			d.cancel()
			delete(s.dumps, k)
		}
	}
	for k := range s.queues {
		if !isMember[k] {
			delete(s.queues, k)
		}
	}
	// Contact details may change without membership changing.
	for _, m := range members {
		if h, ok := s.pending[m.Ed25519]; ok {
			h.node = m
		}
		if h, ok := s.asks[m.Ed25519]; ok {
			h.node = m
		}
		if q, ok := s.queues[m.Ed25519]; ok {
			q.node = m
		}
	}
	s.qmu.Unlock()
	s.reach.update(snap)
	s.poke()
}

func hexID(id uint64) string { return strconv.FormatUint(id, 16) }

// copySources picks the members that send a joining (or restarted) node
// their copy of the swarm: the two that follow it in key order. Every
// member computes the same pair, so a newcomer gets two dumps rather than
// one from every member (a full swarm's worth of traffic six times over on
// a home uplink), and one lagging member cannot leave it with gaps.
// A node that moved here from another swarm gets its copies the same way,
// through the members that see it as new.
func copySources(members []registry.Node, joiner [32]byte) []registry.Node {
	idx := -1
	for i, m := range members { // sorted by key (NewRing)
		if m.Ed25519 == joiner {
			idx = i
		}
	}
	if idx < 0 {
		return nil
	}
	var out []registry.Node
	for k := 1; k < len(members) && len(out) < copyFanout; k++ {
		out = append(out, members[(idx+k)%len(members)])
	}
	return out
}

// copyFanout is how many members send a newcomer the swarm's messages.
const copyFanout = 2

func (s *Swarm) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Lookup implements rpc.Swarm. Accounts of a space we are still handing
// over count as ours: we serve them until their new owners have them.
func (s *Swarm) Lookup(a storage.Account) (uint64, []registry.Node, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.have {
		self := s.cfg.Self
		return registry.NoSwarm, []registry.Node{self}, false
	}
	id := s.ring.Owner(a)
	if id != registry.NoSwarm && id == s.ourID {
		return id, s.members, true
	}
	pos := storage.Position(a.Key)
	for _, r := range s.retained {
		if storage.InRange(pos, r.lower, r.upper) && s.ourID != registry.NoSwarm {
			return s.ourID, s.members, true
		}
	}
	return id, s.ring.Members[id], false
}

// Ours is this node's swarm id and its members (NoSwarm and nil when the
// node is in no swarm).
func (s *Swarm) Ours() (uint64, []registry.Node) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ourID, slices.Clone(s.members)
}

// Space is our swarm space (lower, upper]; ok is false outside any swarm.
func (s *Swarm) Space() (lower, upper uint64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lower, s.upper, s.ourID != registry.NoSwarm
}

// NotReady implements rpc.Swarm.
func (s *Swarm) NotReady() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.have {
		r := "no network snapshot yet from " + s.cfg.Source.Name()
		if s.fetchErr != nil {
			r += ": " + s.fetchErr.Error()
		}
		return []string{r}
	}
	if s.ourID == registry.NoSwarm {
		if _, listed := s.snap.Find(s.cfg.Self.Ed25519); listed {
			return []string{"not in a swarm (decommissioned or awaiting assignment)"}
		}
		return []string{"not in the network registry yet"}
	}
	return nil
}

// Snapshot implements rpc.Swarm.
func (s *Swarm) Snapshot() registry.Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.snap
}

// others is our swarm without ourselves.
func (s *Swarm) others() []registry.Node {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]registry.Node, 0, len(s.members))
	for _, m := range s.members {
		if m.Ed25519 != s.cfg.Self.Ed25519 {
			out = append(out, m)
		}
	}
	return out
}

// StorageCCBody is the sn.storage_cc body: the bt list [method, params]
// with the params dict embedded as is.
func StorageCCBody(method string, btParams []byte) []byte {
	b := make([]byte, 0, len(btParams)+len(method)+8)
	b = append(b, 'l')
	b = appendStr(b, []byte(method))
	b = append(b, btParams...)
	return append(b, 'e')
}

// Replicate implements rpc.Swarm: forward to every other member at once,
// 5 s each; members that cannot be reached (or are not ready) get the
// request queued for retry, and while a member has a queue, requests for it
// join the queue at once (in order, and without waiting out a timeout on
// every write while a board is unplugged).
func (s *Swarm) Replicate(ctx context.Context, method string, btParams []byte) []rpc.MemberReply {
	others := s.others()
	if len(others) == 0 {
		return nil
	}
	body := StorageCCBody(method, btParams)
	out := make([]rpc.MemberReply, len(others))
	var wg sync.WaitGroup
	for i, m := range others {
		if n := s.backlog(m); n > 0 {
			// Join the backlog: overtaking it could apply a delete before
			// the store it deletes. The retry loop sends it in order.
			s.enqueue(m, method, btParams)
			out[i] = rpc.MemberReply{Node: m, Err: errBacklog(n)}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
			rep, err := s.cfg.Transport.Call(cctx, m, peer.CmdStorageCC, body)
			cancel()
			out[i] = rpc.MemberReply{Node: m, Reply: rep, Err: err}
			if err != nil || retryable(rep.Status) {
				s.enqueue(m, method, btParams)
			}
		}()
	}
	wg.Wait()
	return out
}

// retryable: the member may accept later (busy, not ready, or its view of
// the swarm lags ours); 4xx answers about the request itself will not change.
func retryable(status int) bool {
	return status >= 500 || status == http.StatusMisdirectedRequest || status == http.StatusTooManyRequests
}

// MessageFromStoreParams rebuilds the stored message from a forwarded
// store's bt params (spec §6.4), for re-delivery with sn.data.
func MessageFromStoreParams(btParams []byte) (storage.Message, error) {
	var m storage.Message
	v, err := bencode.Unmarshal(btParams)
	if err != nil {
		return m, err
	}
	d, err := bencode.AsDict(v)
	if err != nil {
		return m, err
	}
	pk, _, err := d.Bytes("pubkey")
	if err != nil {
		return m, err
	}
	if m.Owner, err = storage.AccountFromBytes(pk); err != nil {
		return m, err
	}
	ts, ok1, err1 := d.Int("timestamp")
	exp, ok2, err2 := d.Int("expiry")
	data, ok3, err3 := d.Bytes("data")
	ns, _, err4 := d.Int("namespace")
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return m, err
	}
	if !ok1 || !ok2 || !ok3 {
		return m, errors.New("store params lack timestamp, expiry or data")
	}
	if ns < -32768 || ns > 32767 {
		return m, fmt.Errorf("namespace %d out of range", ns)
	}
	m.Timestamp, m.Expiry, m.Data, m.Namespace = ts, exp, bytes.Clone(data), storage.Namespace(ns)
	m.Hash = storage.MessageHash(m.Owner, m.Namespace, m.Data)
	return m, nil
}

// HandleData is the receiving side of sn.data: store every message of the
// blob, ignoring duplicates.
func (s *Swarm) HandleData(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
	ms, err := DecodeBlob(body)
	if err != nil {
		return peer.Reply{Status: http.StatusBadRequest, Body: []byte("Request payload malformed: " + err.Error())}
	}
	now := s.cfg.Now().UnixMilli()
	live := ms[:0]
	for _, m := range ms {
		if m.Expiry > now {
			live = append(live, m)
		}
	}
	if len(live) > 0 {
		if _, err := s.cfg.Store.StoreBatch(ctx, live); err != nil {
			s.log.Warn("store pushed messages", "from", shortKey(from), "count", len(live), "err", err)
			return peer.Reply{Status: http.StatusInternalServerError, Body: []byte("store failed")}
		}
	}
	return peer.Reply{Status: http.StatusOK, Body: []byte("OK")}
}

// HandleDataReady is the receiving side of sn.data_ready (spec §6.6): the
// caller must be in our swarm as we see it; t=1 asks for our copy.
func (s *Swarm) HandleDataReady(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
	v, err := bencode.Unmarshal(body)
	d, derr := bencode.AsDict(v)
	if err != nil || derr != nil {
		return peer.Reply{Status: http.StatusBadRequest, Body: []byte("Request payload malformed")}
	}
	t, _, err1 := d.Int("t")
	_, _, err2 := d.Int("#")
	if err1 != nil || err2 != nil || (t != 0 && t != 1) {
		return peer.Reply{Status: http.StatusBadRequest, Body: []byte("Request payload malformed")}
	}
	var ed [32]byte
	copy(ed[:], from)
	var member registry.Node
	found := false
	for _, m := range s.others() {
		if m.Ed25519 == ed {
			member, found = m, true
		}
	}
	if !found {
		return peer.Reply{Status: http.StatusMisdirectedRequest, Body: []byte("Swarm mismatch")}
	}
	if t == 1 {
		s.scheduleDump(member)
	}
	return peer.Reply{Status: http.StatusOK, Body: bencode.MustMarshal([]any{"OK", map[string]any{"#": Version}})}
}

func shortKey(b []byte) string {
	if len(b) > 6 {
		b = b[:6]
	}
	return fmt.Sprintf("%x", b)
}
