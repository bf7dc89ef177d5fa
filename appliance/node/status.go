package node

import (
	"encoding/json"
	"github.com/snodebox/snodebox/netstack/registry"
	"net/http"
	"time"
)

// Status is the node's state as /status.json reports it. The appliance's
// status page embeds it and adds board, health and tuning sections.
type Status struct {
	Healthy  bool     `json:"healthy"`
	Reasons  []string `json:"reasons"`
	Version  string   `json:"version"`
	Protocol string   `json:"protocol_version"`
	Ed25519  string   `json:"ed25519"`
	X25519   string   `json:"x25519"`
	Address  string   `json:"https"`
	Registry string   `json:"registry"`
	UptimeS  int64    `json:"uptime_s"`
	Messages int64    `json:"messages"`
	DBBytes  int64    `json:"db_bytes"`
	DBCap    int64    `json:"db_cap_bytes"`
	Fsyncs   int64    `json:"fsyncs"`
	Stores   int64    `json:"stores"`
	SwarmID  string   `json:"swarm_id"`
	Swarm    []string `json:"swarm_members"`
	Time     int64    `json:"time_ms"`
	// Oxend is the oxend-omq registry's view (nil for other registries).
	Oxend *OxendStatus `json:"oxend,omitempty"`
}

// OxendStatus is what the status page says about the node's oxend.
type OxendStatus struct {
	Height    uint64    `json:"height"`
	LastPing  time.Time `json:"last_ping_accepted,omitzero"`
	PingError string    `json:"ping_error,omitempty"`
	// Active: this node is in oxend's list with a swarm.
	Active bool `json:"active"`
}

// Status collects the node's state.
func (n *Node) Status() Status {
	st := n.Store.Stats()
	reasons := n.Swarm.NotReady()
	s := Status{
		Healthy:  len(reasons) == 0,
		Reasons:  append([]string{}, reasons...),
		Version:  Version,
		Ed25519:  n.Keys.Ed25519Hex(),
		X25519:   n.Keys.X25519Hex(),
		Address:  "https://" + n.Self.HTTPSAddr(),
		Registry: n.Source.Name(),
		UptimeS:  int64(n.Uptime() / time.Second),
		Messages: st.Messages,
		DBBytes:  st.DBBytes,
		DBCap:    st.CapBytes,
		Fsyncs:   st.Fsyncs,
		Stores:   st.Stores,
		Time:     time.Now().UnixMilli(),
	}
	s.Protocol = protocolString()
	id, members := n.Swarm.Ours()
	if n.oxend != nil {
		snap := n.Swarm.Snapshot()
		at, perr := n.oxend.LastPing()
		me, found := snap.Find(n.Self.Ed25519)
		s.Oxend = &OxendStatus{Height: snap.Height, LastPing: at, PingError: perr, Active: found && me.SwarmID != registry.NoSwarm}
	}
	s.SwarmID = hex64(id)
	for _, m := range members {
		s.Swarm = append(s.Swarm, m.Ed25519Hex())
	}
	return s
}

// StatusHandler serves GET /status.json.
func (n *Node) StatusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(n.Status())
	})
	return mux
}
