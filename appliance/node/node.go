// Package node assembles the node services — identity, message store, storage
// RPC, swarm membership, onion relay, peer transport — into one unit that
// hosted mode (`snoded run`) and PID 1 both start.
package node

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/onion"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/peer/httpspeer"
	"github.com/snodebox/snodebox/netstack/peer/omqpeer"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/msgstore"
	"github.com/snodebox/snodebox/storage/rpc"
	"github.com/snodebox/snodebox/storage/swarm"
)

// Version is snodebox's own release version (set by the linker).
var Version = "0.1.0-dev"

// Config is everything a node needs to start. Zero values mean defaults.
type Config struct {
	DataDir           string // identity, database, persisted state
	KeyDir            string // default DataDir/keys
	Listen            string // HTTPS: storage RPC, onion, peer transport (default 127.0.0.1:22021)
	StatusListen      string // plain HTTP status page ("" = none)
	PublicIP          string // address published to the network (default: Listen's IP)
	Registry          string // registry spec: "self", "oxend:URL", "devnet:URL"
	ServeRegistry     bool   // also serve the devnet registry on the HTTPS listener
	DBCapBytes        int64  // message store cap (0 = default)
	RateLimit         rpc.RateLimit
	AllowPrivateProxy bool // onion proxy may reach private/loopback targets
	Logger            *slog.Logger
	// Routes are more handlers on the HTTPS listener (pattern → handler),
	// e.g. the update agent's push endpoint.
	Routes map[string]http.Handler
	// OMQListen, when set, serves peers over OxenMQ (CURVE under the
	// node's X25519 key) on this address and publishes its port; peers
	// that publish an OMQ port are then called over OMQ, others over HTTPS.
	OMQListen string
}

// Node is a running set of node services.
type Node struct {
	cfg      Config
	log      *slog.Logger
	Keys     *identity.Keys
	Self     registry.Node
	Store    storage.Store
	RPC      *rpc.Server
	Swarm    *swarm.Swarm
	Onion    *onion.Handler
	Peers    *httpspeer.Transport
	Source   registry.Source
	Registry *registry.DevnetRegistry // served when Config.ServeRegistry
	started  time.Time
	listener net.Listener
	httpsSrv *http.Server
	oxend    *registry.OxendOMQ // registry oxend-omq:…
	// OMQ is the OxenMQ peer transport (Config.OMQListen).
	OMQ *omqpeer.Transport
}

// byX25519 finds a service node of the current list by its X25519 key.
func (n *Node) byX25519(x [32]byte) (registry.Node, bool) {
	for _, nd := range n.Swarm.Snapshot().Nodes {
		if nd.X25519 == x {
			return nd, true
		}
	}
	return registry.Node{}, false
}

// clientRPC runs storage.<method> from the OMQ listener through the same
// RPC server as HTTPS.
func (n *Node) clientRPC(ctx context.Context, method string, params []byte) (int, []byte) {
	if len(params) == 0 {
		params = []byte("{}")
	}
	body, err := json.Marshal(map[string]json.RawMessage{"method": json.RawMessage(strconv.Quote(method)), "params": params})
	if err != nil {
		return http.StatusBadRequest, []byte("invalid params: " + err.Error())
	}
	status, out, _ := n.RPC.Invoke(ctx, body)
	return status, out
}

// serveOMQ serves peers over OxenMQ.
func (n *Node) serveOMQ(ctx context.Context) error {
	ln, err := net.Listen("tcp", n.cfg.OMQListen)
	if err != nil {
		return fmt.Errorf("listen omq %s: %w", n.cfg.OMQListen, err)
	}
	return n.OMQ.Serve(ctx, ln)
}

// OxendOMQPrefix selects the oxend-omq registry: oxend-omq:ipc:///path or
// oxend-omq:curve://IP:PORT/X25519HEX.
const OxendOMQPrefix = "oxend-omq:"

// OxendPingInterval is how often oxend hears from us: upstream's storage
// server pings every 30 s, and oxend's uptime proofs need a recent ping.
const OxendPingInterval = 30 * time.Second

// oxendKeys builds the identity from oxend's keys, checking that its
// X25519 key is the one derived from the Ed25519 key (spec §9).
func oxendKeys(o *registry.OxendOMQ) (*identity.Keys, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sk, err := o.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("service node keys from oxend: %w", err)
	}
	keys, err := identity.FromSeed(sk.Ed25519[:])
	if err != nil {
		return nil, err
	}
	if keys.X25519Priv != sk.X25519 {
		return nil, errors.New("oxend's X25519 key is not the one its Ed25519 key derives: refusing to run with mismatched keys")
	}
	return keys, nil
}

// oxendPinger pings oxend and renews the block subscription; a new block
// makes the swarm fetch the list at once.
func (n *Node) oxendPinger(ctx context.Context) error {
	t := time.NewTicker(OxendPingInterval)
	defer t.Stop()
	for {
		info := registry.PingInfo{
			Version:   rpc.ProtocolVersion,
			Ed25519:   n.Keys.Ed25519Hex(),
			HTTPSPort: int(n.Self.HTTPSPort),
			OMQPort:   int(n.Self.OMQPort),
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := n.oxend.Ping(pctx, info); err != nil {
			n.log.Warn("oxend ping", "err", err)
		}
		if err := n.oxend.Subscribe(pctx); err != nil {
			n.log.Warn("oxend block subscription", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-n.oxend.Blocks():
			n.Swarm.Refresh()
		}
	}
}

// New opens the node's state (identity, database) and wires its services;
// Run starts serving.
func New(cfg Config) (*Node, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("node: data directory not set")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:22021"
	}
	if cfg.KeyDir == "" {
		cfg.KeyDir = filepath.Join(cfg.DataDir, "keys")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RateLimit == (rpc.RateLimit{}) {
		cfg.RateLimit = rpc.DefaultRateLimit
	}
	n := &Node{cfg: cfg, log: cfg.Logger, started: time.Now()}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", cfg.DataDir, err)
	}
	var keys *identity.Keys
	if strings.HasPrefix(cfg.Registry, OxendOMQPrefix) {
		// A service node's keys are oxend's: asked for at every start,
		// never generated here, never written or logged.
		o, err := registry.NewOxendOMQ(strings.TrimPrefix(cfg.Registry, OxendOMQPrefix), nil)
		if err != nil {
			return nil, err
		}
		if keys, err = oxendKeys(o); err != nil {
			return nil, err
		}
		n.oxend = o
		n.log.Info("identity from oxend", "ed25519", keys.Ed25519Hex(), "x25519", keys.X25519Hex())
	} else {
		k, created, err := identity.Load(cfg.KeyDir)
		if err != nil {
			return nil, err
		}
		keys = k
		n.log.Info("identity", "ed25519", keys.Ed25519Hex(), "x25519", keys.X25519Hex(), "new", created)
	}
	n.Keys = keys

	self, err := selfRecord(cfg, keys)
	if err != nil {
		return nil, err
	}
	n.Self = self

	st, err := msgstore.Open(filepath.Join(cfg.DataDir, "messages.db"), msgstore.Options{CapBytes: cfg.DBCapBytes})
	if err != nil {
		return nil, fmt.Errorf("open message store: %w", err)
	}
	n.Store = st

	if cfg.ServeRegistry {
		n.Registry = registry.NewDevnetRegistry(registry.DevnetOptions{
			StatePath: filepath.Join(cfg.DataDir, "devnet-registry.json"), Logger: n.log.With("svc", "registry"),
		})
	}
	var src registry.Source = n.oxend
	if n.oxend == nil {
		if src, err = registrySource(cfg, keys, self); err != nil {
			st.Close()
			return nil, err
		}
	}
	n.Source = src

	n.Peers = httpspeer.New(httpspeer.Config{Keys: keys, Known: n.known, Logger: n.log.With("svc", "peer")})
	var transport peer.Transport = n.Peers
	muxes := []peer.Mux{n.Peers}
	if cfg.OMQListen != "" {
		n.OMQ = omqpeer.New(omqpeer.Config{Keys: keys, ByX25519: n.byX25519, Fallback: n.Peers, Logger: n.log.With("svc", "omq"),
			ClientRPC: n.clientRPC, ClientMethods: rpc.Methods()})
		transport = n.OMQ
		muxes = append(muxes, n.OMQ)
	}
	sc := swarm.Config{Keys: keys, Self: self, Source: src, Transport: transport, Store: st, Logger: n.log.With("svc", "swarm")}
	if o := n.oxend; o != nil {
		sc.ReportPeer = func(peer registry.Node, reachable bool) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := o.ReportPeer(ctx, peer.Legacy, reachable); err != nil {
				n.log.Debug("oxend report_peer_status", "peer", peer.String(), "err", err)
			}
		}
	}
	n.Swarm = swarm.New(sc)
	n.RPC = rpc.New(rpc.Config{Keys: keys, Store: st, Swarm: n.Swarm, RateLimit: cfg.RateLimit, Logger: n.log.With("svc", "rpc")})
	n.Onion = onion.New(onion.Config{
		Keys: keys, RPC: n.RPC, Transport: transport, Lookup: n.lookup, NotReady: n.Swarm.NotReady,
		AllowPrivateProxy: cfg.AllowPrivateProxy, Logger: n.log.With("svc", "onion"),
	})
	for _, m := range muxes {
		m.Handle(peer.CmdStorageCC, n.RPC.HandleStorageCC)
		n.Swarm.Register(m) // data, data_ready
		m.Handle(peer.CmdOnionRequest, n.Onion.HandlePeer)
		m.Handle(peer.CmdPing, func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
			return peer.Reply{Status: http.StatusOK, Body: []byte("pong")}
		})
	}
	return n, nil
}

func selfRecord(cfg Config, keys *identity.Keys) (registry.Node, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return registry.Node{}, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return registry.Node{}, fmt.Errorf("listen port %q: %w", portStr, err)
	}
	ipStr := cfg.PublicIP
	if ipStr == "" {
		ipStr = host
	}
	if ipStr == "" || ipStr == "0.0.0.0" || ipStr == "::" {
		ipStr = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(ipStr)
	if err != nil {
		return registry.Node{}, fmt.Errorf("public ip %q: %w", ipStr, err)
	}
	var rn registry.Node
	copy(rn.Ed25519[:], keys.Ed25519Pub)
	rn.Legacy = rn.Ed25519
	rn.X25519 = keys.X25519Pub
	rn.IP = ip.Unmap()
	rn.HTTPSPort = uint16(port)
	if cfg.OMQListen != "" {
		_, op, err := net.SplitHostPort(cfg.OMQListen)
		if err != nil {
			return registry.Node{}, fmt.Errorf("omq listen address %q: %w", cfg.OMQListen, err)
		}
		p, err := strconv.ParseUint(op, 10, 16)
		if err != nil || p == 0 {
			return registry.Node{}, fmt.Errorf("omq listen port %q: want 1-65535", op)
		}
		rn.OMQPort = uint16(p)
	}
	rn.Version = [3]uint16{uint16(rpc.ProtocolVersion[0]), uint16(rpc.ProtocolVersion[1]), uint16(rpc.ProtocolVersion[2])}
	return rn, nil
}

// registrySource reads --registry: "self" (one-node network), "oxend:URL"
// (a Session node daemon's JSON-RPC) or "devnet:URL" (a devnet registry
// served by some snoded with --serve-registry). A node that serves the
// registry and names no other source joins its own devnet.
func registrySource(cfg Config, keys *identity.Keys, self registry.Node) (registry.Source, error) {
	spec := cfg.Registry
	if cfg.ServeRegistry && (spec == "" || spec == "self") {
		spec = "devnet:https://" + self.HTTPSAddr()
	}
	switch {
	case spec == "" || spec == "self":
		return registry.Self{Node: self}, nil
	case strings.HasPrefix(spec, "oxend:"):
		u, err := registryURL(spec, "oxend:")
		if err != nil {
			return nil, err
		}
		return registry.NewOxend(u, nil), nil
	case strings.HasPrefix(spec, "devnet:"):
		u, err := registryURL(spec, "devnet:")
		if err != nil {
			return nil, err
		}
		return registry.NewDevnetSource(u, keys, self, nil), nil
	default:
		return nil, fmt.Errorf("registry %q: unknown source (want self, oxend:URL, oxend-omq:ADDRESS or devnet:URL)", spec)
	}
}

func registryURL(spec, prefix string) (string, error) {
	raw := strings.TrimPrefix(spec, prefix)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("registry %q: want %shttp(s)://host:port", spec, prefix)
	}
	return strings.TrimSuffix(raw, "/"), nil
}

func (n *Node) lookup(ed [32]byte) (registry.Node, bool) {
	snap := n.Swarm.Snapshot()
	return snap.Find(ed)
}

func (n *Node) known(pub ed25519.PublicKey) bool {
	var ed [32]byte
	if len(pub) != 32 {
		return false
	}
	copy(ed[:], pub)
	_, ok := n.lookup(ed)
	return ok
}

// Handler is the HTTPS listener's routing (spec §1.1).
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /storage_rpc/v1", n.RPC)
	mux.Handle("POST /onion_req/v2", n.Onion)
	mux.Handle(httpspeer.PathPrefix, n.Peers)
	if n.Registry != nil {
		mux.Handle("POST "+registry.JSONRPCPath, n.Registry)
		mux.Handle("POST "+registry.AnnouncePath, n.Registry)
	}
	for pattern, h := range n.cfg.Routes {
		mux.Handle(pattern, h)
	}
	mux.HandleFunc("POST /ping_test/v1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Oxen-Snode-Pubkey", base64Std(n.Self.Legacy[:]))
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /get_stats/v1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"version": "%d.%d.%d"}`, rpc.ProtocolVersion[0], rpc.ProtocolVersion[1], rpc.ProtocolVersion[2])
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "%s %s Not Found", r.Method, r.URL.RequestURI())
	})
	server := fmt.Sprintf("Oxen Storage Server/%d.%d.%d", rpc.ProtocolVersion[0], rpc.ProtocolVersion[1], rpc.ProtocolVersion[2])
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", server)
		mux.ServeHTTP(w, r)
	})
}

// TLSConfig is the HTTPS listener's TLS: Ed25519 identity certificate for
// peers (and Go clients), ECDSA for everyone else; client certificates are
// requested (peers present theirs) but never required (clients have none).
func (n *Node) TLSConfig() (*tls.Config, error) {
	certs, err := n.Keys.Certificates()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: certs,
		ClientAuth:   tls.RequestClientCert,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// Listen binds the HTTPS port (separate from Run so callers learn bind
// errors before they report the node as started).
func (n *Node) Listen() error {
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen https %s: %w", n.cfg.Listen, err)
	}
	n.listener = ln
	return nil
}

// Service is a named long-running part of the node, run under supervision.
type Service struct {
	Name string
	Run  func(ctx context.Context) error
}

// Services lists what Run supervises.
func (n *Node) Services() []Service {
	out := []Service{
		{Name: "https", Run: n.serveHTTPS},
		{Name: "swarm", Run: n.Swarm.Run},
		{Name: "prune", Run: n.prune},
	}
	if n.oxend != nil {
		out = append(out, Service{Name: "oxend", Run: n.oxendPinger})
	}
	if n.OMQ != nil {
		out = append(out, Service{Name: "omq", Run: n.serveOMQ})
	}
	return out
}

func (n *Node) serveHTTPS(ctx context.Context) error {
	if n.listener == nil {
		if err := n.Listen(); err != nil {
			return err
		}
	}
	tc, err := n.TLSConfig()
	if err != nil {
		return fmt.Errorf("https tls: %w", err)
	}
	srv := &http.Server{
		Handler:           n.Handler(),
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	n.httpsSrv = srv
	ln := n.listener
	n.listener = nil // a restarted service binds again
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return fmt.Errorf("https serve: %w", err)
	}
}

// PruneInterval is how often expired messages are removed (spec §12).
const PruneInterval = 10 * time.Second

func (n *Node) prune(ctx context.Context) error {
	t := time.NewTicker(PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if k, err := n.Store.Prune(ctx, time.Now().UnixMilli()); err != nil {
				n.log.Warn("prune expired messages", "err", err)
			} else if k > 0 {
				n.log.Debug("pruned expired messages", "count", k)
			}
		}
	}
}

// Close releases the node's state; call after Run returned.
func (n *Node) Close() error {
	return n.Store.Close()
}

// Uptime since New.
func (n *Node) Uptime() time.Duration { return time.Since(n.started) }
