// Package rpc implements the Session storage RPC (spec §3–§5, §12):
// parsing, authentication, every client method, response shapes and status
// codes, rate limiting, and the receiving side of swarm forwarding.
package rpc

import (
	"context"
	"log/slog"
	"time"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
)

// ProtocolVersion is the storage-server version snodebox speaks on the wire
// (`info`, `get_stats`, Server header): the sn.data blob with namespaces and
// the data_ready handshake are 2.11.3 behaviour.
var ProtocolVersion = [3]int{2, 11, 3}

// Hardfork is reported as "hf" in answers.
var Hardfork = [2]int{19, 6}

// Swarm is what the RPC needs from swarm membership (storage/swarm).
type Swarm interface {
	// Lookup maps an account to the swarm that owns it (spec §6.1) and its
	// members; ours reports whether that swarm is ours.
	Lookup(a storage.Account) (swarmID uint64, members []registry.Node, ours bool)
	// NotReady returns why the node cannot serve yet (503), nil when ready.
	NotReady() []string
	// Replicate sends a recursive request — method and the bt-encoded
	// params dict of spec §6.4 — to every other member of our swarm and
	// returns each member's reply (5 s timeout each). Members that fail are
	// retried later by the swarm so they catch up.
	Replicate(ctx context.Context, method string, btParams []byte) []MemberReply
	// Snapshot is the current network (for oxend_request get_service_nodes).
	Snapshot() registry.Snapshot
}

// MemberReply is one swarm member's answer to a forwarded request.
type MemberReply struct {
	Node  registry.Node
	Reply peer.Reply
	Err   error // transport failure; errors.Is(err, peer.ErrTimeout) for timeouts
}

// RateLimit is the per-client-IP token bucket of spec §12.
type RateLimit struct {
	Disabled   bool
	Burst      float64 // bucket size (600)
	PerSecond  float64 // refill (300/s)
	MaxClients int     // tracked IPs (10,000)
}

// DefaultRateLimit is the reference server's bucket.
var DefaultRateLimit = RateLimit{Burst: 600, PerSecond: 300, MaxClients: 10000}

// Config wires a Server.
type Config struct {
	Keys      *identity.Keys
	Store     storage.Store
	Swarm     Swarm
	Now       func() time.Time // nil = time.Now
	RateLimit RateLimit
	Logger    *slog.Logger
}

// Server answers storage RPC requests.
type Server struct {
	cfg     Config
	limiter *limiter
}

// New makes a Server.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, limiter: newLimiter(cfg.RateLimit)}
}
