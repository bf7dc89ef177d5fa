package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/snodebox/snodebox/appliance/config"
	"github.com/snodebox/snodebox/appliance/logring"
	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/appliance/procstat"
	"github.com/snodebox/snodebox/appliance/status"
	"github.com/snodebox/snodebox/appliance/supervise"
	"github.com/snodebox/snodebox/board"
	"github.com/snodebox/snodebox/board/sim"
)

// HostedConfig is `snoded run`: the node config plus the appliance parts.
type HostedConfig struct {
	Node node.Config
	// ConfigFile is an optional snodebox.toml; its registry, ports are
	// not applied over the flags (the flags are explicit), but an invalid
	// file shows on the status page as on a device.
	ConfigFile string
	// StatusLANOnly refuses status clients outside private/loopback ranges.
	StatusLANOnly bool
	// Profiling serves CPU profiles on the status address
	// (status.ProfilePath, loopback clients only).
	Profiling bool
	// LogLevel for the console (the status page ring keeps Info and up).
	LogLevel slog.Level
	// LogOutput is where logs go (default stderr).
	LogOutput io.Writer

	// Tests: a board (default: a new simulated one), the supervision
	// policy, health interval, and a hook seeing the runtime once started.
	Board          board.Board
	Policy         *supervise.Policy
	HealthInterval int // seconds; 0 = 5
	onStart        func(*app)
}

// RunHosted runs the node services on this host with a simulated board,
// supervision, health and the status page, until SIGINT/SIGTERM or the
// simulated power key. The simulated button acts on the hosted node: hold 5 s
// restarts the services, the factory-reset gesture wipes the data directory
// except the keys, the power key exits.
func RunHosted(cfg HostedConfig) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if ram, err := procstat.MemInfo("MemTotal"); err == nil {
		setMemoryLimit(ram, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}
	return runHosted(ctx, cfg)
}

func runHosted(ctx context.Context, cfg HostedConfig) error {
	if cfg.Node.DataDir == "" {
		return errors.New("run: data directory not set")
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stderr
	}
	ring := logring.New(200)
	log := slog.New(ring.Handler(slog.NewTextHandler(cfg.LogOutput, &slog.HandlerOptions{Level: cfg.LogLevel})))
	cfg.Node.Logger = log
	if cfg.Node.KeyDir == "" {
		cfg.Node.KeyDir = filepath.Join(cfg.Node.DataDir, "keys")
	}
	rt := &app{log: log, ring: ring, hosted: true, nodeCfg: cfg.Node, policy: supervise.DefaultPolicy, history: status.NewHistory(), profiling: cfg.Profiling}
	if cfg.Policy != nil {
		rt.policy = *cfg.Policy
	}
	switch b := cfg.Board.(type) {
	case nil:
		rt.sim = sim.New()
		rt.board = rt.sim
	case *sim.Board:
		rt.sim, rt.board = b, b
	default:
		rt.board = b
	}
	if cfg.ConfigFile != "" {
		c, err := config.Load(cfg.ConfigFile)
		rt.cfg = c
		if err != nil {
			rt.cfgErr = err.Error()
			log.Error("config invalid; using defaults", "err", err)
		}
	}
	rt.booting.Store(true)
	rt.system = supervise.New(rt.policy, nil, log)
	rt.setupHealth()
	if cfg.HealthInterval > 0 {
		rt.monitor.Interval = time.Duration(cfg.HealthInterval) * time.Second
	}
	rt.monitor.Check(ctx) // LED: booting

	var services []supervise.Service
	if addr := cfg.Node.StatusListen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("status page %s: %w", addr, err)
		}
		rt.statusLn = ln
		services = append(services, rt.statusService(addr, cfg.StatusLANOnly))
	}
	services = append(services, supervise.Service{Name: "health", Run: rt.monitor.Run}, supervise.Service{Name: "traffic", Run: rt.traffic}, supervise.Service{Name: "history", Run: rt.sampleHistory})
	sysCtx, sysCancel := context.WithCancel(context.Background())
	sysDone := make(chan struct{})
	go func() {
		defer close(sysDone)
		rt.system.Run(sysCtx, services)
	}()
	defer func() {
		sysCancel()
		<-sysDone
	}()
	log.Info("snoded running", "https", cfg.Node.Listen, "status", cfg.Node.StatusListen, "data", cfg.Node.DataDir)
	if cfg.onStart != nil {
		cfg.onStart(rt)
	}

	actions := rt.board.Actions()
	for {
		out, err := rt.runGeneration(ctx, actions)
		if err != nil {
			return err
		}
		switch out {
		case outShutdown:
			log.Info("shutting down")
			return nil
		case outPowerOff:
			log.Info("power key: stopping")
			return nil
		case outReboot, outRestart:
			log.Info("reboot: restarting the node services")
		case outFactoryReset:
			log.Warn("factory reset: wiping the data directory (keys kept)", "dir", cfg.Node.DataDir)
			if err := wipeExceptKeys(cfg.Node.DataDir, cfg.Node.KeyDir); err != nil {
				log.Error("factory reset", "err", err)
			}
			rt.mu.Lock()
			rt.resets++
			rt.mu.Unlock()
		}
		rt.booting.Store(true)
		rt.monitor.Check(ctx)
	}
}
