package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snodebox/snodebox/appliance/config"
	"github.com/snodebox/snodebox/appliance/health"
	"github.com/snodebox/snodebox/appliance/logring"
	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/appliance/procstat"
	"github.com/snodebox/snodebox/appliance/slots"
	"github.com/snodebox/snodebox/appliance/status"
	"github.com/snodebox/snodebox/appliance/supervise"
	"github.com/snodebox/snodebox/appliance/tuning"
	"github.com/snodebox/snodebox/appliance/update"
	"github.com/snodebox/snodebox/board"
	"github.com/snodebox/snodebox/board/sim"
	"github.com/snodebox/snodebox/netstack/clock"
)

// runtime is the running appliance, shared by Boot and RunHosted: the node
// (restarted as a new generation on reboot-in-place and factory reset in
// hosted mode), the system services around it, health, and the report.
type app struct {
	log     *slog.Logger
	ring    *logring.Ring
	board   board.Board
	sim     *sim.Board // hosted mode: the status page drives it
	hosted  bool
	device  *device // PID 1 only
	nodeCfg node.Config
	cfg     config.Config
	cfgErr  string
	policy  supervise.Policy
	clock   *clock.Clock
	// profiling: the status server also answers CPU profiles to this
	// host (snoded run --pprof).
	profiling bool

	booting   atomic.Bool
	finishing atomic.Bool // PID 1 shutdown under way
	monitor   *health.Monitor
	system    *supervise.Supervisor // status page, health, clock, link

	mu       sync.Mutex
	node     *node.Node
	nodeSup  *supervise.Supervisor
	nodeErr  string
	tuned    []tuning.Result
	data     dataState
	slot     string
	slots    *slots.Agent // nil unless U-Boot's script booted a slot
	updater  *update.Agent
	history  *status.History
	gens     int // node generations started (restarts + 1)
	resets   int // factory resets done
	statusLn net.Listener

	sigTarget func(cmd uintptr) // device: a signal asks for reboot/power off
	restart   chan struct{}     // restart the node in place (new public address)
}

// restartNode asks the running generation to stop and start again with the
// current nodeCfg (e.g. DHCP came up after boot with the public address).
func (rt *app) restartNode() {
	select {
	case rt.restart <- struct{}{}:
	default:
	}
}

func (rt *app) current() (*node.Node, *supervise.Supervisor) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.node, rt.nodeSup
}

// setupHealth wires the monitor's probes.
func (rt *app) setupHealth() {
	rpcAddr := loopbackAddr(rt.nodeCfg.Listen)
	rpcProbe := health.RPCProbe(rpcAddr)
	rt.monitor = &health.Monitor{
		Board: rt.board,
		Log:   rt.log,
		Probes: health.Probes{
			Booting: rt.booting.Load,
			Data: func() (bool, string) {
				if rt.hosted {
					return true, ""
				}
				rt.mu.Lock()
				defer rt.mu.Unlock()
				return rt.data.Mounted, rt.data.Err
			},
			ConfigError: func() string { return rt.cfgErr },
			Network: func() bool {
				if rt.hosted {
					return true // the host's network is not ours to judge
				}
				return linkHasRoute()
			},
			Clock: func() (bool, bool, string) {
				if rt.clock == nil {
					return clock.Sane(time.Now()), true, ""
				}
				return clock.Sane(time.Now()), rt.clock.Synced(), rt.clock.LastError()
			},
			Swarm: func() []string {
				n, _ := rt.current()
				if n == nil {
					rt.mu.Lock()
					defer rt.mu.Unlock()
					if rt.nodeErr == "" {
						return []string{"node starting"}
					}
					return []string{"node not running: " + rt.nodeErr}
				}
				return n.Swarm.NotReady()
			},
			CrashLoops: func() []string {
				out := rt.system.CrashLooping()
				if _, sup := rt.current(); sup != nil {
					out = append(out, sup.CrashLooping()...)
				}
				return out
			},
			Updating: func() bool { return rt.updater != nil && rt.updater.Status().Updating },
			Rollback: func() string {
				if rt.slots == nil {
					return ""
				}
				return rt.slots.RollbackReason()
			},
			RPC: func(ctx context.Context) error {
				if n, _ := rt.current(); n == nil {
					return errors.New("node not running")
				}
				return rpcProbe(ctx)
			},
		},
		OnChange: rt.healthChanged,
	}
}

func (rt *app) healthChanged(prev, next health.Result) {
	rt.log.Info("health", "healthy", next.Healthy, "led", next.LED.String(), "reasons", next.Reasons, "warnings", next.Warnings)
	if rt.hosted {
		return
	}
	if next.LED == board.LEDHealthy && prev.LED != board.LEDHealthy {
		markers.mark("healthy")
	}
	if next.LED == board.LEDDegraded && prev.LED != board.LEDDegraded {
		markers.mark("degraded reason=%s", strings.Join(next.Reasons, "; "))
	}
}

// loopbackAddr turns a listen address into one the local probe can dial.
func loopbackAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// statusService serves the status page on addr until ctx ends.
func (rt *app) statusService(addr string, lanOnly bool) supervise.Service {
	return supervise.Service{Name: "status", Run: func(ctx context.Context) error {
		rt.mu.Lock()
		ln := rt.statusLn
		rt.statusLn = nil
		rt.mu.Unlock()
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", addr); err != nil {
				return fmt.Errorf("status page %s: %w", addr, err)
			}
		}
		var h http.Handler = status.Handler(status.SourceFunc(rt.Report), rt.sim)
		if lanOnly {
			h = status.LANOnly(h)
		}
		if rt.profiling {
			mux := http.NewServeMux()
			mux.Handle("/", h)
			mux.Handle("GET "+status.ProfilePath, status.CPUProfile())
			h = mux
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(rt.log.Handler(), slog.LevelDebug),
			// Requests end with the service: a CPU profile (up to
			// 120 s) must not outlive a restart.
			BaseContext: func(net.Listener) context.Context { return ctx }}
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			return nil
		case err := <-errc:
			return fmt.Errorf("status page: %w", err)
		}
	}}
}

// Report assembles the status page's view.
func (rt *app) Report() status.Report {
	var r status.Report
	n, sup := rt.current()
	if n != nil {
		r.Status = n.Status()
		for _, p := range n.Swarm.Reachability() {
			r.Peers = append(r.Peers, status.PeerState{Ed25519: p.Ed25519, Address: p.Address, OK: p.Reachable, LastSeen: p.LastPass, Failures: p.Failures})
		}
	} else {
		r.Status.Version = node.Version
		r.Status.Time = time.Now().UnixMilli()
	}
	h := rt.monitor.Last()
	r.Healthy = h.Healthy
	r.Reasons = append([]string{}, h.Reasons...)
	r.Warnings = append([]string{}, h.Warnings...)
	r.LED = rt.board.LED().String()
	r.Board = rt.board.Info()
	if c, ok := rt.board.Temperature(); ok {
		r.TemperatureC = &c
	}
	states := rt.system.States()
	if sup != nil {
		states = append(states, sup.States()...)
	}
	for _, s := range states {
		r.Services = append(r.Services, status.ServiceState{Name: s.Name, State: s.State, Restarts: s.Restarts, LastError: s.LastError})
	}
	r.Disk = diskUsage(rt.nodeCfg.DataDir)
	r.Memory = memoryUsage()
	rt.mu.Lock()
	for _, t := range rt.tuned {
		src := t.Source
		if t.Error != "" {
			if strings.HasPrefix(t.Error, tuning.ErrUnavailable.Error()) {
				src = t.Error
			} else {
				src = "failed: " + t.Error
			}
		}
		r.Tuning = append(r.Tuning, status.Tuned{Name: t.Name, Value: t.Value, Default: t.Default, Source: src})
	}
	r.Slot = rt.slot
	rt.mu.Unlock()
	if rt.slots != nil {
		r.Update = &status.Update{Status: rt.slots.Status()}
		if rt.updater != nil {
			us := rt.updater.Status()
			r.Update.Available, r.Update.Updating = us.Available, us.Updating
			if us.Last != nil {
				r.Update.Last = &status.Attempt{Version: us.Last.Version, Result: us.Last.Result, Reason: us.Last.Reason, At: us.Last.At}
			}
			r.Update.RollbackIndex = us.Index
		}
	}
	r.ConfigError = rt.cfgErr
	r.Logs = rt.ring.Lines()
	if rt.history != nil {
		r.History = rt.history.Samples()
	}
	if r.Reasons == nil {
		r.Reasons = []string{}
	}
	return r
}

func diskUsage(dir string) status.Disk {
	d := status.Disk{Mount: dir}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err == nil {
		d.TotalBytes = fs.Blocks * uint64(fs.Bsize)
		d.FreeBytes = fs.Bavail * uint64(fs.Bsize)
	}
	return d
}

func memoryUsage() status.Memory {
	var m status.Memory
	m.TotalBytes, _ = procstat.MemInfo("MemTotal")
	m.AvailableBytes, _ = procstat.MemInfo("MemAvailable")
	m.RSSBytes, _ = procstat.Status(procstat.Self, "VmRSS")
	return m
}

// outcome is why a node generation ended.
type outcome int

const (
	outShutdown outcome = iota // ctx ended (signal)
	outReboot
	outPowerOff
	outFactoryReset
	outRestart // in place, same process
)

// runGeneration starts a node and its services and runs until ctx ends or a
// button action asks for something; the node is closed when it returns.
func (rt *app) runGeneration(ctx context.Context, actions <-chan board.Action) (outcome, error) {
	rt.mu.Lock()
	ncfg := rt.nodeCfg
	rt.mu.Unlock()
	n, err := node.New(ncfg)
	if err == nil {
		if err = n.Listen(); err != nil {
			n.Close()
		}
	}
	if err != nil {
		rt.mu.Lock()
		rt.nodeErr = err.Error()
		rt.mu.Unlock()
		return outShutdown, err
	}
	gctx, cancel := context.WithCancel(ctx)
	sup := supervise.New(rt.policy, nil, rt.log)
	rt.mu.Lock()
	rt.node, rt.nodeSup, rt.nodeErr = n, sup, ""
	rt.gens++
	rt.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sup.Run(gctx, n.SupervisedServices())
	}()
	stop := func() {
		cancel()
		<-done
		rt.mu.Lock()
		rt.node = nil
		rt.nodeErr = "stopped"
		rt.mu.Unlock()
		if err := n.Close(); err != nil {
			rt.log.Warn("close node", "err", err)
		}
	}
	rt.onServicesStarted()
	for {
		select {
		case <-ctx.Done():
			stop()
			return outShutdown, nil
		case <-rt.restart:
			stop()
			return outRestart, nil
		case a := <-actions:
			rt.log.Info("button", "action", a.String())
			switch a {
			case board.ActionStatus:
				rt.statusCode()
				continue
			case board.ActionReboot:
				stop()
				return outReboot, nil
			case board.ActionPowerOff:
				stop()
				return outPowerOff, nil
			case board.ActionFactoryReset:
				stop()
				return outFactoryReset, nil
			}
		}
	}
}

func (rt *app) onServicesStarted() {
	if rt.booting.Swap(false) && !rt.hosted {
		markers.mark("services started")
	}
	rt.monitor.Kick()
}

// statusCode logs (and on the device prints) a short status: the LED state
// and the first reason, the same thing the blinks say.
func (rt *app) statusCode() {
	if rt.slots != nil && rt.slots.RollbackReason() != "" {
		// A short press acknowledges a rollback (DESIGN §4: degraded
		// until acknowledged or the next good update).
		rt.slots.Acknowledge()
		rt.log.Info("rollback acknowledged")
		if !rt.hosted {
			markers.mark("rollback acknowledged")
		}
	}
	h := rt.monitor.Check(context.Background())
	code := int(h.LED) + 1
	rt.log.Info("status", "code", code, "led", h.LED.String(), "healthy", h.Healthy, "reasons", h.Reasons, "warnings", h.Warnings)
	if cb, ok := rt.board.(board.CodeBlinker); ok {
		if err := cb.BlinkCode(code); err != nil {
			rt.log.Warn("blink status code", "code", code, "err", err)
		}
	}
	if !rt.hosted {
		markers.mark("status code=%d led=%s healthy=%v", code, h.LED, h.Healthy)
	}
}

// sampleHistory feeds the status page's graphs.
func (rt *app) sampleHistory(ctx context.Context) error {
	t := time.NewTicker(status.HistoryEvery)
	defer t.Stop()
	for {
		// Until the node runs there is nothing to plot (a zero would
		// read as "empty disk, no messages").
		if n, _ := rt.current(); n != nil {
			st := n.Store.Stats()
			d := diskUsage(rt.nodeCfg.DataDir)
			var temp *float64
			if c, ok := rt.board.Temperature(); ok {
				temp = &c
			}
			rt.history.Add(time.Now(), st.Stores, st.Messages, d.TotalBytes-min(d.FreeBytes, d.TotalBytes), temp)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// traffic flickers the LED when messages are stored: the board shows the
// flicker only while healthy (DESIGN §4 "on, brief flicker on traffic").
func (rt *app) traffic(ctx context.Context) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var last int64 = -1
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, _ := rt.current()
		if n == nil {
			continue
		}
		stores := n.Store.Stats().Stores
		if last >= 0 && stores != last {
			rt.board.Traffic()
		}
		last = stores
	}
}

// wipeExceptKeys removes everything in dataDir except keyDir (hosted
// factory reset; on the device the filesystem is re-created instead).
func wipeExceptKeys(dataDir, keyDir string) error {
	ents, err := os.ReadDir(dataDir)
	if err != nil {
		return fmt.Errorf("factory reset %s: %w", dataDir, err)
	}
	keyAbs, _ := filepath.Abs(keyDir)
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dataDir, e.Name())
		if abs, _ := filepath.Abs(p); abs == keyAbs || strings.HasPrefix(keyAbs, abs+string(filepath.Separator)) {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
