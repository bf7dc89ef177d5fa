package appliance

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snodebox/snodebox/appliance/config"
	"github.com/snodebox/snodebox/appliance/logring"
	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/appliance/status"
	"github.com/snodebox/snodebox/appliance/supervise"
	"github.com/snodebox/snodebox/appliance/tuning"
	"github.com/snodebox/snodebox/board"
	"github.com/snodebox/snodebox/netstack/clock"
	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/link"
)

// Device paths.
const (
	BootMount   = "/boot"
	CmdlinePath = "/proc/cmdline"
)

// device is PID 1's hardware state.
type device struct {
	reaper   *reaper
	watchdog board.Watchdog
	wdStop   chan struct{}
	bootDev  string // FAT boot partition ("" = none)
	bootPart partition
	link     *link.Manager
	cmdline  config.Cmdline
}

func linkHasRoute() bool { return link.HasDefaultRoute("/proc/net") }

// Boot is PID 1: it boots the device, runs the node and never returns. Any
// panic on the boot path is recovered, logged, and ends in a clean reboot.
func Boot() {
	ring := logring.New(300)
	logger := slog.New(ring.Handler(slog.NewTextHandler(lockedWriter{markers}, &slog.HandlerOptions{Level: slog.LevelInfo})))
	slog.SetDefault(logger)
	// u-root's dhclient logs through the standard logger.
	log.SetOutput(slogWriter{logger})
	log.SetFlags(0)
	rt := &app{log: logger, ring: ring, policy: supervise.DefaultPolicy, device: &device{reaper: newReaper(logger)}, restart: make(chan struct{}, 1), history: status.NewHistory()}
	defer func() {
		if r := recover(); r != nil {
			logger.Error("PID 1 panic; rebooting", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			rt.finish(unix.LINUX_REBOOT_CMD_RESTART)
		}
	}()
	rt.boot()
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	// dhclient prints whole DHCP packets; the first line says what happened.
	msg, _, _ := strings.Cut(strings.TrimSpace(string(p)), "\n")
	w.l.Info(msg, "from", "dhclient")
	return len(p), nil
}

func (rt *app) boot() {
	d := rt.device
	markers.mark("init")
	rt.booting.Store(true)

	// 1. Signals: SIGTERM reboots, SIGUSR2 powers off, SIGINT (ctrl-alt-del
	// on some consoles) is ignored, SIGCHLD reaps orphans.
	signal.Ignore(syscall.SIGINT)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGUSR2, syscall.SIGCHLD)

	// 3 (before 2: /dev/watchdog needs devtmpfs). Mounts.
	if err := mountBasics(); err != nil {
		rt.log.Warn("mounts", "err", err)
	}
	// 4. Kernel modules in the image's order (before the board: LED,
	// button and the Pi's bcm2835_wdt watchdog are modules).
	n, err := loadModules("/", rt.log)
	if err != nil {
		rt.log.Warn("modules", "err", err)
	}
	markers.mark("modules loaded count=%d", n)

	// Config: kernel command line over snodebox.toml on the boot partition
	// (its [board] section picks LED and button).
	rt.loadConfig()

	// 2. Board and hardware watchdog.
	opt := board.DefaultOptions()
	opt.LED, opt.LEDGPIO = rt.cfg.Board.LED, rt.cfg.Board.LEDGPIO
	opt.ButtonGPIO, opt.ButtonActiveLow = rt.cfg.Board.ButtonGPIO, rt.cfg.Board.ButtonLowActive
	opt.Console = lockedWriter{markers}
	rt.board = board.DetectWith(rt.log, opt)
	rt.log.Info("board", "name", rt.board.Info().Name, "model", rt.board.Info().Model)
	rt.board.SetLED(board.LEDBooting)
	if w := d.cmdline.Watchdog; w != nil && !*w {
		rt.log.Warn("hardware watchdog left closed (snode.watchdog=0)")
	} else if err := rt.openWatchdog(); err != nil {
		rt.log.Info("no hardware watchdog", "err", err)
	}

	// 5. Sysctls before links come up.
	ram := memoryUsage().TotalBytes
	setMemoryLimit(ram, rt.log)
	early := tuning.Apply(tuning.Options{Scope: tuning.Early, Env: tuning.Env{RAMBytes: ram}, Overrides: rt.cfg.Tuning})

	// 6. Data partition.
	data := prepareData(d.cmdline.Data, DataMount, systemBlock, d.reaper, rt.log)
	markers.mark("data mounted dev=%s formatted=%v grown=%v", orNone(data.Dev), data.Formatted, data.Grown)
	disk := tuning.Apply(tuning.Options{Scope: tuning.DataDisk, DataDisk: data.Disk, Env: tuning.Env{RAMBytes: ram}, Overrides: rt.cfg.Tuning})
	rt.mu.Lock()
	rt.data = data
	rt.tuned = append(early, disk...)
	rt.mu.Unlock()
	for _, t := range rt.tuned {
		rt.log.Debug("tuning", "name", t.Name, "value", t.Value, "source", t.Source, "err", t.Error)
	}

	// 8a. Clock: the last known time, early, so nothing sees 1970.
	rt.clock = &clock.Clock{Servers: rt.cfg.NTP.Servers, StatePath: filepath.Join(DataMount, clock.StateFile), Log: rt.log.With("svc", "clock")}
	if _, err := rt.clock.Restore(); err != nil {
		rt.log.Warn("restore clock", "err", err)
	}

	// Identity: restore from the boot partition backup when the data
	// partition is new, then back it up (first boot).
	keyDir := filepath.Join(DataMount, "keys")
	if d.bootDev != "" {
		if ok, err := restoreKeys(filepath.Join(BootMount, KeyBackupDir), keyDir); err != nil {
			rt.log.Warn("restore identity", "err", err)
		} else if ok {
			rt.log.Info("identity restored from boot partition backup")
		}
	}
	keys, _, err := identity.Load(keyDir)
	if err != nil {
		rt.log.Error("identity", "err", err)
	}
	rt.backupIdentity(keyDir)
	hostname := rt.cfg.Hostname
	if hostname == "" && keys != nil {
		hostname = link.HostnameFor(keys.Ed25519Hex())
	}
	if hostname != "" {
		if err := link.SetHostname(hostname); err != nil {
			rt.log.Warn("hostname", "err", err)
		}
	}

	// 7. Network.
	if err := link.LoopbackUp(); err != nil {
		rt.log.Warn("loopback", "err", err)
	}
	d.link = link.New(rt.linkConfig(hostname))
	st, err := d.link.Up(context.Background())
	if err != nil {
		rt.log.Warn("network not up yet; retrying in the background", "err", err)
	} else {
		addr := st.Address
		if p, err := netip.ParsePrefix(addr); err == nil {
			addr = p.Addr().String()
		}
		markers.mark("network up if=%s addr=%s", st.Interface, addr)
	}

	// 8b. Time servers before anything signs or checks timestamps.
	synced := false
	if len(rt.cfg.NTP.Servers) > 0 && err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		synced, err = rt.clock.Sync(ctx)
		cancel()
		if err != nil {
			rt.log.Warn("clock not synced", "err", err)
		}
	} else {
		rt.clock.Sync(context.Background()) // records why not
	}
	markers.mark("clock synced=%v", synced)

	// 9. Services.
	rt.nodeCfg = node.Config{
		DataDir: DataMount,
		KeyDir:  keyDir,
		Listen:  fmt.Sprintf(":%d", rt.cfg.Ports.RPC),
		OMQListen: func() string {
			if rt.cfg.Ports.OMQ == 0 {
				return ""
			}
			return fmt.Sprintf(":%d", rt.cfg.Ports.OMQ)
		}(),
		Registry: rt.cfg.Registry,
		PublicIP: rt.publicIP(st),
		// The message store may fill 80% of the data filesystem; the rest
		// is headroom for bbolt's free pages and the clock/identity files.
		DBCapBytes: int64(diskUsage(DataMount).TotalBytes / 10 * 8),
		Logger:     rt.log,
	}
	d.link.OnUp(func(st link.State) {
		ip := rt.publicIP(st)
		rt.mu.Lock()
		changed := ip != "" && ip != rt.nodeCfg.PublicIP
		if changed {
			rt.nodeCfg.PublicIP = ip
		}
		rt.mu.Unlock()
		if changed {
			rt.log.Info("network address changed; restarting the node services", "ip", ip)
			addr := st.Address
			if p, err := netip.ParsePrefix(addr); err == nil {
				addr = p.Addr().String()
			}
			markers.mark("network up if=%s addr=%s", st.Interface, addr)
			rt.restartNode()
		}
	})
	rt.slot = d.cmdline.Slot
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signalled := make(chan uintptr, 1)
	rt.sigTarget = func(cmd uintptr) {
		select {
		case signalled <- cmd:
		default:
		}
		cancel()
	}
	rt.system = supervise.New(rt.policy, nil, rt.log)
	rt.setupHealth()
	rt.setupSlots()
	rt.setupUpdates()
	services := []supervise.Service{
		{Name: "health", Run: rt.monitor.Run},
		{Name: "clock", Run: rt.clock.Run},
		{Name: "network", Run: d.link.Run},
		{Name: "reaper", Run: func(ctx context.Context) error { return rt.reap(ctx, sigs) }},
		{Name: "traffic", Run: rt.traffic},
		{Name: "history", Run: rt.sampleHistory},
	}
	if p := rt.cfg.Ports.Status; p != 0 {
		services = append(services, rt.statusService(fmt.Sprintf(":%d", p), rt.cfg.Status.LANOnly))
	}
	if rt.updater != nil {
		services = append(services, supervise.Service{Name: "update", Run: rt.updater.Run})
	}
	if rt.slots != nil {
		services = append(services, supervise.Service{Name: "slots", Run: func(ctx context.Context) error {
			err := rt.slots.Run(ctx)
			if err == nil {
				<-ctx.Done() // committed: nothing more to do this boot
			}
			return err
		}})
	}
	sysCtx, sysCancel := context.WithCancel(context.Background())
	sysDone := make(chan struct{})
	go func() {
		defer close(sysDone)
		rt.system.Run(sysCtx, services)
	}()
	stopSystem := func() {
		if rt.updater != nil {
			rt.updater.Stop() // never write a slot while shutting down
		}
		sysCancel()
		select {
		case <-sysDone:
		case <-time.After(10 * time.Second):
			rt.log.Warn("system services slow to stop")
		}
	}

	actions := make(chan board.Action, 4)
	go rt.forward(rt.board.Actions(), actions)
	for {
		out, err := rt.runGeneration(ctx, actions)
		if err != nil {
			rt.log.Error("node failed to start; retrying", "err", err)
			rt.monitor.Kick()
			out = rt.waitRetry(ctx, actions)
			if out == outRestart {
				continue
			}
		}
		switch out {
		case outShutdown:
			cmd := uintptr(unix.LINUX_REBOOT_CMD_RESTART)
			select {
			case cmd = <-signalled:
			default:
			}
			stopSystem()
			rt.finish(cmd)
		case outRestart:
			continue
		case outReboot:
			stopSystem()
			rt.finish(unix.LINUX_REBOOT_CMD_RESTART)
		case outPowerOff:
			stopSystem()
			rt.finish(unix.LINUX_REBOOT_CMD_POWER_OFF)
		case outFactoryReset:
			stopSystem()
			rt.factoryReset()
			rt.finish(unix.LINUX_REBOOT_CMD_RESTART)
		}
	}
}

// waitRetry waits before the next attempt to start the node, still obeying
// the button and signals; outRestart means: try again.
func (rt *app) waitRetry(ctx context.Context, actions <-chan board.Action) outcome {
	retry := time.After(10 * time.Second)
	for {
		select {
		case <-ctx.Done():
			return outShutdown
		case <-retry:
			return outRestart
		case a := <-actions:
			switch a {
			case board.ActionReboot:
				return outReboot
			case board.ActionPowerOff:
				return outPowerOff
			case board.ActionFactoryReset:
				return outFactoryReset
			default:
				rt.statusCode()
			}
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// forward passes button actions on (the board's channel is fixed for the
// board's life; generations come and go).
func (rt *app) forward(in <-chan board.Action, out chan<- board.Action) {
	defer func() {
		if r := recover(); r != nil {
			rt.log.Error("button forwarder panic", "panic", fmt.Sprint(r))
		}
	}()
	for a := range in {
		out <- a
	}
}

// reap handles signals: SIGCHLD reaps orphans, SIGTERM/SIGUSR2 shut down.
func (rt *app) reap(ctx context.Context, sigs <-chan os.Signal) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-sigs:
			switch s {
			case syscall.SIGCHLD:
				rt.device.reaper.reapOnce()
			case syscall.SIGTERM:
				rt.log.Info("SIGTERM: rebooting")
				rt.sigTarget(unix.LINUX_REBOOT_CMD_RESTART)
			case syscall.SIGUSR2:
				rt.log.Info("SIGUSR2: powering off")
				rt.sigTarget(unix.LINUX_REBOOT_CMD_POWER_OFF)
			}
		}
	}
}

func (rt *app) openWatchdog() error {
	wd, err := rt.board.OpenWatchdog()
	if err != nil {
		return err
	}
	rt.device.watchdog = wd
	rt.device.wdStop = make(chan struct{})
	markers.mark("watchdog opened dev=/dev/watchdog")
	go func() {
		defer func() {
			if r := recover(); r != nil {
				rt.log.Error("watchdog goroutine panic", "panic", fmt.Sprint(r))
			}
		}()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-rt.device.wdStop:
				return
			case <-t.C:
				if err := wd.Pet(); err != nil {
					rt.log.Warn("pet watchdog", "err", err)
				}
			}
		}
	}()
	return nil
}

// loadConfig mounts the boot partition (read-only; vfat modules are loaded
// by now), reads snodebox.toml and lays the kernel command line over it.
func (rt *app) loadConfig() {
	d := rt.device
	cl, err := config.ReadCmdline(CmdlinePath)
	if err != nil {
		rt.log.Warn("kernel command line", "err", err)
	}
	if len(cl.Unknown) > 0 {
		rt.log.Warn("unknown snode.* kernel parameters", "keys", cl.Unknown)
	}
	d.cmdline = cl
	rt.cfg = config.Defaults()
	if p, err := systemBlock.findBoot(); err == nil {
		dev := systemBlock.dev(p.Name)
		os.MkdirAll(BootMount, 0o755)
		if err := unix.Mount(dev, BootMount, "vfat", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "umask=0077"); err != nil {
			rt.log.Warn("mount boot partition", "dev", dev, "err", err)
		} else {
			d.bootDev, d.bootPart = dev, p
			c, err := config.Load(filepath.Join(BootMount, config.FileName))
			rt.cfg = c
			if err != nil {
				rt.cfgErr = err.Error()
				rt.log.Error("snodebox.toml invalid; booting with defaults", "err", err)
			}
		}
	}
	rt.cfg.Apply(cl)
}

// remountBoot makes the boot partition writable for one change and returns
// the undo; FAT is fragile under power cuts, so it is read-only otherwise.
func (rt *app) remountBoot() (func(), error) {
	flags := uintptr(unix.MS_REMOUNT | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := unix.Mount(rt.device.bootDev, BootMount, "vfat", flags, "umask=0077"); err != nil {
		return nil, fmt.Errorf("remount boot read-write: %w", err)
	}
	return func() {
		unix.Sync()
		if err := unix.Mount(rt.device.bootDev, BootMount, "vfat", flags|unix.MS_RDONLY, "umask=0077"); err != nil {
			rt.log.Warn("remount boot read-only", "err", err)
		}
	}, nil
}

func (rt *app) backupIdentity(keyDir string) {
	if rt.device.bootDev == "" {
		return
	}
	wrote, err := backupKeys(keyDir, filepath.Join(BootMount, KeyBackupDir), rt.remountBoot)
	if err != nil {
		rt.log.Warn("identity backup", "err", err)
	} else if wrote {
		rt.log.Info("identity backed up to the boot partition")
	}
}

func (rt *app) linkConfig(hostname string) link.Config {
	c := link.Config{Interface: rt.cfg.Network.Interface, Hostname: hostname, Log: rt.log.With("svc", "network")}
	for _, d := range rt.cfg.Network.DNS {
		if a, err := netip.ParseAddr(d); err == nil {
			c.ExtraDNS = append(c.ExtraDNS, a)
		}
	}
	if rt.cfg.Network.Mode == "static" {
		p, _ := netip.ParsePrefix(rt.cfg.Network.Address)
		gw, _ := netip.ParseAddr(rt.cfg.Network.Gateway)
		c.Static = &link.Static{Address: p, Gateway: gw, DNS: c.ExtraDNS}
		c.ExtraDNS = nil
	}
	return c
}

func (rt *app) publicIP(st link.State) string {
	if rt.cfg.PublicIP != "" {
		return rt.cfg.PublicIP
	}
	if p, err := netip.ParsePrefix(st.Address); err == nil {
		return p.Addr().String()
	}
	return ""
}

// factoryReset re-creates the data filesystem and restores the identity
// from the boot partition backup (unless the config asks for new keys).
func (rt *app) factoryReset() {
	rt.log.Warn("factory reset: re-creating the data partition")
	markers.mark("factory reset")
	rt.board.SetLED(board.LEDUpdating)
	if rt.device.bootDev != "" && rt.cfg.Identity.NewKeysOnReset {
		done, err := rt.remountBoot()
		if err == nil {
			os.RemoveAll(filepath.Join(BootMount, KeyBackupDir))
			done()
			rt.log.Warn("factory reset: a new identity will be created")
		}
	}
	rt.mu.Lock()
	dev := rt.data.Dev
	rt.mu.Unlock()
	if dev == "" {
		rt.log.Error("factory reset: no data partition known")
		return
	}
	unix.Sync()
	if err := unix.Unmount(DataMount, 0); err != nil {
		rt.log.Error("factory reset: unmount data", "err", err)
		return
	}
	if _, err := rt.device.reaper.output(mke2fsPath, mke2fsArgs(dev)...); err != nil {
		rt.log.Error("factory reset: format", "err", err)
		return
	}
	if err := unix.Mount(dev, DataMount, "ext4", DataMountFlags, DataMountData); err != nil {
		rt.log.Error("factory reset: mount", "err", err)
		return
	}
	if rt.device.bootDev != "" {
		if ok, err := restoreKeys(filepath.Join(BootMount, KeyBackupDir), filepath.Join(DataMount, "keys")); err != nil {
			rt.log.Error("factory reset: restore identity", "err", err)
		} else if ok {
			rt.log.Info("factory reset: identity restored")
		}
	}
}

// finish ends PID 1's life: persist the clock, sync, unmount, and
// reboot(2). It does not return.
func (rt *app) finish(cmd uintptr) {
	if rt.finishing.Swap(true) {
		// A panic during shutdown brought us back here: just reboot.
		for {
			unix.Sync()
			unix.Reboot(int(cmd))
			time.Sleep(time.Second)
		}
	}
	// Stop petting: should unmounting hang on a dying card, the watchdog
	// resets the board instead of leaving it stuck.
	if d := rt.device; d != nil && d.watchdog != nil {
		close(d.wdStop)
	}
	if rt.clock != nil {
		if err := rt.clock.Persist(); err != nil {
			rt.log.Warn("persist time", "err", err)
		}
	}
	unix.Sync()
	for _, m := range []string{DataMount, BootMount} {
		if err := unix.Unmount(m, 0); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			rt.log.Warn("unmount; detaching", "mount", m, "err", err)
			unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	unix.Sync()
	if d := rt.device; d != nil && d.watchdog != nil {
		if cmd == unix.LINUX_REBOOT_CMD_POWER_OFF {
			d.watchdog.Close() // magic close: powered off is not a hang
		}
	}
	if cmd == unix.LINUX_REBOOT_CMD_POWER_OFF {
		markers.mark("power off")
	} else {
		markers.mark("reboot")
	}
	for {
		if err := unix.Reboot(int(cmd)); err != nil {
			rt.log.Error("reboot(2)", "err", err)
		}
		time.Sleep(time.Second)
	}
}
