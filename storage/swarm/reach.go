package swarm

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

// ReachConfig tunes reachability tests (spec §7.1). Zero values are the
// reference's: a 200 ms tick, one random node tested every N(10 s, 3 s),
// failing nodes retested after failures·10 s + N(10, 3) s (≤ 2 min), 5 s
// timeouts.
type ReachConfig struct {
	Tick    time.Duration // < 0 disables the tests
	Every   time.Duration // mean gap between random tests
	Timeout time.Duration
	// HTTPClient sends POST /ping_test/v1 (nil: one that accepts the
	// self-signed certificates every node presents).
	HTTPClient *http.Client
}

// PeerStatus is one node's reachability as we last tested it.
type PeerStatus struct {
	Ed25519   string    `json:"ed25519"`
	Address   string    `json:"https"`
	SwarmID   string    `json:"swarm_id"`
	Tested    bool      `json:"tested"`
	Reachable bool      `json:"reachable"`
	HTTPSOK   bool      `json:"https_ok"`
	PeerOK    bool      `json:"peer_ok"`
	Failures  int       `json:"failures"`
	LastTest  time.Time `json:"last_test,omitzero"`
	LastPass  time.Time `json:"last_pass,omitzero"`
	NextTest  time.Time `json:"next_test,omitzero"`
	Error     string    `json:"error,omitempty"`
}

type peerState struct {
	node   registry.Node
	status PeerStatus
	busy   bool
}

type reacher struct {
	s   *Swarm
	cfg ReachConfig

	mu         sync.Mutex
	peers      map[[32]byte]*peerState
	order      [][32]byte // shuffled; random tests walk it
	pos        int
	nextRandom time.Time
	rng        *rand.Rand
}

func newReacher(s *Swarm, cfg ReachConfig) *reacher {
	if cfg.Tick == 0 {
		cfg.Tick = 200 * time.Millisecond
	}
	if cfg.Every <= 0 {
		cfg.Every = 10 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = registry.InsecureClient(cfg.Timeout)
	}
	r := &reacher{s: s, cfg: cfg, peers: map[[32]byte]*peerState{}, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	// The first test waits a round: peers learn about a starting node from
	// the registry only after it has announced itself.
	r.nextRandom = s.cfg.Now().Add(r.normal(cfg.Every))
	return r
}

// normal draws N(mean, mean·0.3), at least 0.
func (r *reacher) normal(mean time.Duration) time.Duration {
	d := time.Duration(float64(mean) + r.rng.NormFloat64()*float64(mean)*0.3)
	return max(d, 0)
}

func (r *reacher) update(snap registry.Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[[32]byte]bool{}
	for _, n := range snap.Nodes {
		if n.Ed25519 == r.s.cfg.Self.Ed25519 || !n.IP.IsValid() || n.HTTPSPort == 0 {
			continue
		}
		seen[n.Ed25519] = true
		if p, ok := r.peers[n.Ed25519]; ok {
			p.node = n
			p.status.Address = "https://" + n.HTTPSAddr()
			p.status.SwarmID = hexID(n.SwarmID)
			continue
		}
		r.peers[n.Ed25519] = &peerState{node: n, status: PeerStatus{
			Ed25519: n.Ed25519Hex(), Address: "https://" + n.HTTPSAddr(), SwarmID: hexID(n.SwarmID),
		}}
	}
	for k := range r.peers {
		if !seen[k] {
			delete(r.peers, k)
		}
	}
	r.order = r.order[:0]
	for k := range r.peers {
		r.order = append(r.order, k)
	}
	slices.SortFunc(r.order, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	r.rng.Shuffle(len(r.order), func(i, j int) { r.order[i], r.order[j] = r.order[j], r.order[i] })
	r.pos = 0
}

func (r *reacher) run(ctx context.Context) {
	if r.cfg.Tick < 0 {
		return
	}
	t := time.NewTicker(r.cfg.Tick)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range r.due() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.test(ctx, p)
			}()
		}
	}
}

// due picks up to four failing nodes whose retest is due and, when its
// time has come, the next node of the shuffled list.
func (r *reacher) due() []*peerState {
	now := r.s.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*peerState
	for _, k := range r.order {
		p := r.peers[k]
		if len(out) < 4 && !p.busy && p.status.Failures > 0 && !p.status.NextTest.After(now) {
			p.busy = true
			out = append(out, p)
		}
	}
	if len(r.order) > 0 && !now.Before(r.nextRandom) {
		r.nextRandom = now.Add(r.normal(r.cfg.Every))
		if r.pos >= len(r.order) {
			r.pos = 0
			r.rng.Shuffle(len(r.order), func(i, j int) { r.order[i], r.order[j] = r.order[j], r.order[i] })
		}
		p := r.peers[r.order[r.pos]]
		r.pos++
		if !p.busy {
			p.busy = true
			out = append(out, p)
		}
	}
	return out
}

func (r *reacher) test(ctx context.Context, p *peerState) {
	r.mu.Lock()
	node := p.node
	r.mu.Unlock()
	st := r.s.TestPeer(ctx, node)
	now := r.s.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	p.busy = false
	prevFailures := p.status.Failures
	p.status.Tested, p.status.LastTest = true, now
	p.status.HTTPSOK, p.status.PeerOK, p.status.Error = st.HTTPSOK, st.PeerOK, st.Error
	p.status.Reachable = st.Reachable
	if rep := r.s.cfg.ReportPeer; rep != nil {
		go rep(node, st.Reachable)
	}
	if st.Reachable {
		p.status.Failures, p.status.LastPass, p.status.NextTest = 0, now, time.Time{}
		if prevFailures > 0 {
			r.s.log.Info("peer reachable again", "peer", node.String())
		}
		return
	}
	p.status.Failures++
	wait := min(time.Duration(p.status.Failures)*r.cfg.Every+r.normal(r.cfg.Every), 2*time.Minute)
	p.status.NextTest = now.Add(wait)
	r.s.log.Warn("peer failed reachability test", "peer", node.String(), "failures", p.status.Failures, "err", st.Error)
}

// Reachability is every known peer's last test result, sorted by key.
func (s *Swarm) Reachability() []PeerStatus {
	r := s.reach
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]PeerStatus, 0, len(r.peers))
	for _, p := range r.peers {
		out = append(out, p.status)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(a.Ed25519, b.Ed25519) })
	return out
}

// TestPeer runs one reachability test now: HTTPS POST /ping_test/v1 (200
// and an X-Oxen-Snode-Pubkey naming the node) and a peer-transport ping,
// in parallel. It does not record the result.
func (s *Swarm) TestPeer(ctx context.Context, n registry.Node) PeerStatus {
	st := PeerStatus{Ed25519: n.Ed25519Hex(), Address: "https://" + n.HTTPSAddr(), SwarmID: hexID(n.SwarmID), Tested: true}
	ctx, cancel := context.WithTimeout(ctx, s.reach.cfg.Timeout)
	defer cancel()
	var httpsErr, peerErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); httpsErr = s.pingHTTPS(ctx, n) }()
	go func() {
		defer wg.Done()
		rep, err := s.cfg.Transport.Call(ctx, n, peer.CmdPing, nil)
		switch {
		case err != nil:
			peerErr = err
		case rep.Status != http.StatusOK:
			peerErr = fmt.Errorf("peer ping: HTTP %d", rep.Status)
		}
	}()
	wg.Wait()
	st.HTTPSOK, st.PeerOK = httpsErr == nil, peerErr == nil
	st.Reachable = st.HTTPSOK && st.PeerOK
	if err := errors.Join(httpsErr, peerErr); err != nil {
		st.Error = err.Error()
	}
	return st
}

func (s *Swarm) pingHTTPS(ctx context.Context, n registry.Node) error {
	url := "https://" + n.HTTPSAddr() + "/ping_test/v1"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	req.Host = identity.SnodeAddress(n.Legacy[:])
	resp, err := s.reach.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("ping_test: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping_test: HTTP %d", resp.StatusCode)
	}
	got, ok := decodeKey(resp.Header.Get("X-Oxen-Snode-Pubkey"))
	if !ok || got != n.Legacy {
		return errors.New("ping_test: X-Oxen-Snode-Pubkey does not name the node")
	}
	return nil
}

// decodeKey accepts the header encodings the reference accepts: base64,
// hex, z-base-32 or 32 raw bytes.
func decodeKey(s string) ([32]byte, bool) {
	var k [32]byte
	try := func(b []byte, err error) bool {
		if err == nil && len(b) == 32 {
			copy(k[:], b)
			return true
		}
		return false
	}
	switch {
	case len(s) == 64 && try(hex.DecodeString(s)):
	case try(base64.StdEncoding.DecodeString(s)):
	case try(base64.RawStdEncoding.DecodeString(s)):
	case len(s) == 52 && try(zbase32Decode(s)):
	case len(s) == 32:
		copy(k[:], s)
	default:
		return k, false
	}
	return k, true
}

func zbase32Decode(s string) ([]byte, error) {
	const alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769"
	var out []byte
	var acc uint64
	bits := 0
	for _, c := range s {
		v := strings.IndexRune(alphabet, c)
		if v < 0 {
			return nil, errors.New("not z-base-32")
		}
		acc = acc<<5 | uint64(v)
		bits += 5
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
		}
	}
	return out, nil
}
