// Package health decides whether the node is healthy, why not, and what the
// LED shows (DESIGN §3 step 10, §4). Evaluate is a pure function of Facts so
// every transition is a table test; Monitor gathers the facts from probes,
// evaluates them periodically and drives the board's LED.
package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/snodebox/snodebox/board"
)

// Facts are the observations health is computed from.
type Facts struct {
	Booting      bool     // boot sequence not finished (services not started)
	DataMounted  bool     // the data partition is mounted (false: tmpfs fallback)
	DataError    string   // why not
	ConfigError  string   // snodebox.toml was invalid (defaults in use)
	Network      bool     // a default route exists (or hosted on loopback)
	ClockSane    bool     // the clock is past the build floor
	ClockSynced  bool     // an SNTP server answered since boot
	ClockNote    string   // why not synced
	SwarmReasons []string // swarm.NotReady(): not in a swarm, still syncing
	CrashLoops   []string // services in a crash loop
	RPCError     string   // the local storage RPC `info` probe failed ("" = answered)
	Updating     bool     // the update agent is writing the other slot
	Rollback     string   // an update rolled back (reason), shown until the next good update
}

// Result is health's verdict.
type Result struct {
	Healthy  bool
	Reasons  []string // why not healthy (empty when healthy)
	Warnings []string // things worth knowing that do not make it unhealthy
	LED      board.LEDState
}

// Evaluate computes health and the LED from facts. LED priority follows
// DESIGN §4: degraded (no data disk, crash loop, config error, rollback)
// beats everything, then booting, updating, no network/time, syncing,
// healthy.
func Evaluate(f Facts) Result {
	var r Result
	degraded := false
	if !f.DataMounted {
		why := "data partition not mounted"
		if f.DataError != "" {
			why += ": " + f.DataError
		}
		r.Reasons = append(r.Reasons, why+" (running from RAM; nothing stored survives a reboot)")
		degraded = true
	}
	for _, s := range f.CrashLoops {
		r.Reasons = append(r.Reasons, "service "+s+" is crash looping")
		degraded = true
	}
	if f.ConfigError != "" {
		r.Reasons = append(r.Reasons, "snodebox.toml is invalid, running with defaults: "+f.ConfigError)
		degraded = true
	}
	if f.Rollback != "" {
		r.Warnings = append(r.Warnings, "update rolled back: "+f.Rollback)
		degraded = true
	}
	if f.Booting {
		r.Reasons = append(r.Reasons, "booting")
	}
	noNet := false
	if !f.Network {
		r.Reasons = append(r.Reasons, "no network route")
		noNet = true
	}
	if !f.ClockSane {
		r.Reasons = append(r.Reasons, "clock not set (no time server answered and no saved time)")
		noNet = true
	}
	if !f.ClockSynced {
		w := "clock not synced"
		if f.ClockNote != "" {
			w += ": " + f.ClockNote
		}
		r.Warnings = append(r.Warnings, w)
	}
	syncing := false
	for _, s := range f.SwarmReasons {
		r.Reasons = append(r.Reasons, s)
		syncing = true
	}
	if f.RPCError != "" && !f.Booting {
		r.Reasons = append(r.Reasons, "storage RPC not answering: "+f.RPCError)
		syncing = true
	}
	r.Healthy = len(r.Reasons) == 0
	switch {
	case degraded:
		r.LED = board.LEDDegraded
	case f.Booting:
		r.LED = board.LEDBooting
	case f.Updating:
		r.LED = board.LEDUpdating
	case noNet:
		r.LED = board.LEDNoNetwork
	case syncing:
		r.LED = board.LEDSyncing
	default:
		r.LED = board.LEDHealthy
	}
	return r
}

// Probes gather facts; nil probes count as fine (hosted mode has no data
// partition of its own to lose, for instance).
type Probes struct {
	Booting     func() bool
	Data        func() (mounted bool, why string)
	ConfigError func() string
	Network     func() bool
	Clock       func() (sane, synced bool, note string)
	Swarm       func() []string
	CrashLoops  func() []string
	RPC         func(ctx context.Context) error
	Updating    func() bool
	Rollback    func() string
}

// Monitor evaluates health periodically and drives the LED.
type Monitor struct {
	Probes   Probes
	Board    board.Board
	Interval time.Duration // default 5 s
	Log      *slog.Logger
	// OnChange is called when the LED state changes (console marker on QEMU,
	// "snodebox: healthy" once).
	OnChange func(prev, next Result)

	mu   sync.Mutex
	last Result
	have bool
	kick chan struct{}
}

// Gather runs every probe.
func (m *Monitor) Gather(ctx context.Context) Facts {
	p := m.Probes
	f := Facts{DataMounted: true, Network: true, ClockSane: true, ClockSynced: true}
	if p.Booting != nil {
		f.Booting = p.Booting()
	}
	if p.Data != nil {
		f.DataMounted, f.DataError = p.Data()
	}
	if p.ConfigError != nil {
		f.ConfigError = p.ConfigError()
	}
	if p.Network != nil {
		f.Network = p.Network()
	}
	if p.Clock != nil {
		f.ClockSane, f.ClockSynced, f.ClockNote = p.Clock()
	}
	if p.Swarm != nil {
		f.SwarmReasons = p.Swarm()
	}
	if p.CrashLoops != nil {
		f.CrashLoops = p.CrashLoops()
	}
	if p.RPC != nil && !f.Booting {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := p.RPC(cctx); err != nil {
			f.RPCError = err.Error()
		}
		cancel()
	}
	if p.Updating != nil {
		f.Updating = p.Updating()
	}
	if p.Rollback != nil {
		f.Rollback = p.Rollback()
	}
	return f
}

// Check gathers, evaluates, sets the LED and records the result.
func (m *Monitor) Check(ctx context.Context) Result {
	r := Evaluate(m.Gather(ctx))
	m.mu.Lock()
	prev, had := m.last, m.have
	m.last, m.have = r, true
	m.mu.Unlock()
	if m.Board != nil {
		if err := m.Board.SetLED(r.LED); err != nil && m.Log != nil {
			m.Log.Warn("set LED", "state", r.LED, "err", err)
		}
	}
	if (!had || prev.LED != r.LED || prev.Healthy != r.Healthy) && m.OnChange != nil {
		m.OnChange(prev, r)
	}
	return r
}

// Last is the latest result (zero before the first Check).
func (m *Monitor) Last() Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.last
	r.Reasons = append([]string{}, r.Reasons...)
	r.Warnings = append([]string{}, r.Warnings...)
	return r
}

// Kick asks Run for an immediate re-check (after a state change).
func (m *Monitor) Kick() {
	m.mu.Lock()
	if m.kick == nil {
		m.kick = make(chan struct{}, 1)
	}
	k := m.kick
	m.mu.Unlock()
	select {
	case k <- struct{}{}:
	default:
	}
}

// Run checks every Interval (and on Kick) until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	every := m.Interval
	if every <= 0 {
		every = 5 * time.Second
	}
	m.mu.Lock()
	if m.kick == nil {
		m.kick = make(chan struct{}, 1)
	}
	k := m.kick
	m.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		m.Check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-k:
		}
	}
}

// RPCProbe returns a probe making a real HTTPS request to the node's storage
// RPC `info` method at addr (host:port), as a client on the network would.
// Node certificates are self-signed (Session clients do not verify them), so
// neither does the probe; it checks the node answers with a 200.
func RPCProbe(addr string) func(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed node cert, see above
		DisableKeepAlives: true,
	}}
	url := "https://" + addr + "/storage_rpc/v1"
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"method":"info","params":{}}`))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("info: %w", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("info: HTTP %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return nil
	}
}
