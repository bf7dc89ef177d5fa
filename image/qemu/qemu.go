// Package qemu boots a snodebox initramfs under QEMU: -M virt (the
// qemu-arm64 board) or -M raspi3b (the Pi 3 kernel, DTB and modules), with a
// data disk, user networking restricted to forwarded ports, and a QMP socket
// for a clean power-off.
package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Machines QEMU can boot, and the image board each uses.
var Machines = map[string]string{
	"virt":    "qemu-arm64",
	"raspi3b": "rpi3",
}

// MachineFor accepts a machine or board name and returns the QEMU machine.
func MachineFor(name string) (string, error) {
	switch name {
	case "virt", "qemu-arm64":
		return "virt", nil
	case "raspi3b", "rpi3":
		return "raspi3b", nil
	}
	return "", fmt.Errorf("qemu: unknown board %q (qemu-arm64 or raspi3b)", name)
}

// Forward is a host TCP port forwarded to a guest port.
type Forward struct {
	HostAddr  string
	HostPort  int
	GuestPort int
}

func (f Forward) String() string {
	return fmt.Sprintf("%s:%d-:%d", f.HostAddr, f.HostPort, f.GuestPort)
}

// ParseForward reads "127.0.0.1:8080-:80" (QEMU's hostfwd syntax). Only
// loopback host addresses are accepted: the node is not exposed further.
func ParseForward(s string) (Forward, error) {
	host, guest, ok := strings.Cut(s, "-")
	if !ok {
		return Forward{}, fmt.Errorf("forward %q: want HOSTADDR:HOSTPORT-:GUESTPORT", s)
	}
	ha, hp, err := net.SplitHostPort(host)
	if err != nil {
		return Forward{}, fmt.Errorf("forward %q: %w", s, err)
	}
	if ha == "" {
		ha = "127.0.0.1"
	}
	if ip := net.ParseIP(ha); ip == nil || !ip.IsLoopback() {
		return Forward{}, fmt.Errorf("forward %q: host address must be loopback", s)
	}
	gp := strings.TrimPrefix(guest, ":")
	f := Forward{HostAddr: ha}
	if f.HostPort, err = strconv.Atoi(hp); err != nil || f.HostPort <= 0 || f.HostPort > 65535 {
		return Forward{}, fmt.Errorf("forward %q: bad host port", s)
	}
	if f.GuestPort, err = strconv.Atoi(gp); err != nil || f.GuestPort <= 0 || f.GuestPort > 65535 {
		return Forward{}, fmt.Errorf("forward %q: bad guest port", s)
	}
	return f, nil
}

// Config describes one boot.
type Config struct {
	Machine  string // virt or raspi3b
	Kernel   string
	Initrd   string
	DTB      string // raspi3b only
	Disk     string // raw data disk
	StateDir string // QMP socket and logs live here
	Forwards []Forward
	// Append is added after the default kernel command line; snode.* given
	// here override the defaults (the last occurrence wins in PID 1).
	Append  string
	NTP     string // snode.ntp= value; empty: no time servers
	Console io.Writer
	Log     *slog.Logger
	Binary  string // default qemu-system-aarch64
	// Firmware boots Disk as a whole SD-card image through U-Boot instead
	// of Kernel/Initrd: virt loads it as -bios, raspi3b as the "kernel" the
	// Pi firmware would have started (with DTB as the firmware's device
	// tree). The guest reboots itself (slot fallback needs that), so QEMU
	// is not told -no-reboot, and virt gets an i6300esb watchdog.
	Firmware string
	// UpdateServer is a host loopback address (127.0.0.1:PORT) the guest
	// reaches as http://UpdateGuestAddr/: QEMU's restricted user network
	// reaches nothing else, so a release server for update tests is put
	// there (guestfwd, one socat per connection).
	UpdateServer string
}

// UpdateGuestAddr is where the guest finds Config.UpdateServer.
const UpdateGuestAddr = "10.0.2.100:80"

// DataDevice is where each machine shows the data disk.
func DataDevice(machine string) string {
	if machine == "raspi3b" {
		return "/dev/mmcblk0p1"
	}
	return "/dev/vda1"
}

// Cmdline is the kernel command line per the image/boot contract.
func (c Config) Cmdline() string {
	console := "console=ttyAMA0"
	if c.Machine == "raspi3b" {
		console = "console=ttyS1,115200"
	}
	parts := []string{
		console, "panic=-1",
		"snode.data=" + DataDevice(c.Machine),
		"snode.ntp=" + c.NTP,
		"snode.rpc_port=22021",
		"snode.status_port=80",
		// QEMU's user network shows host connections as 10.0.2.2, a LAN
		// address, so the LAN-only status page stays reachable.
		"snode.status_lan_only=1",
		"snode.registry=self",
	}
	if c.Machine == "raspi3b" {
		// QEMU models starting the BCM2835 PM watchdog as an immediate
		// reset (hw/misc/bcm2835_powermgt.c), so the guest would die the
		// moment PID 1 opens /dev/watchdog. Append snode.watchdog=1 to
		// see exactly that.
		parts = append(parts, "snode.watchdog=0")
	}
	if c.Append != "" {
		parts = append(parts, c.Append)
	}
	return strings.Join(parts, " ")
}

// QMPPath is the QMP socket of a state directory.
func QMPPath(stateDir string) string { return filepath.Join(stateDir, "qmp.sock") }

// Args returns the QEMU command line (after the binary).
func (c Config) Args() ([]string, error) {
	if c.Firmware == "" && (c.Kernel == "" || c.Initrd == "") {
		return nil, errors.New("qemu: kernel and initrd (or firmware and a disk image) are required")
	}
	if c.Disk == "" || c.StateDir == "" {
		return nil, errors.New("qemu: disk and state dir are required")
	}
	netdev := "user,id=n0,restrict=on"
	for _, f := range c.Forwards {
		netdev += fmt.Sprintf(",hostfwd=tcp:%s:%d-:%d", f.HostAddr, f.HostPort, f.GuestPort)
	}
	if c.UpdateServer != "" {
		host, port, err := net.SplitHostPort(c.UpdateServer)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("qemu: update server %q: want a loopback address 127.0.0.1:PORT", c.UpdateServer)
		}
		if _, err := exec.LookPath("socat"); err != nil {
			return nil, errors.New("qemu: --update-server needs socat (make deps)")
		}
		netdev += fmt.Sprintf(",guestfwd=tcp:%s-cmd:socat - TCP:%s:%s", UpdateGuestAddr, host, port)
	}
	args := []string{"-nographic", "-nodefaults"}
	if c.Firmware == "" {
		args = append(args, "-no-reboot")
	}
	switch c.Machine {
	case "virt":
		machine := "virt"
		if c.Firmware != "" {
			// With firmware QEMU turns ACPI on and sends the power key as an
			// ACPI event; U-Boot hands Linux the device tree, where it is
			// the GPIO key PID 1 listens to.
			machine = "virt,acpi=off"
		}
		args = append(args,
			"-M", machine, "-cpu", "cortex-a72", "-m", "512", "-smp", "2",
			"-serial", "stdio",
			"-drive", "file="+c.Disk+",if=none,format=raw,id=d0",
			"-device", "virtio-blk-pci,drive=d0",
			"-netdev", netdev,
			"-device", "virtio-net-pci,netdev=n0,romfile=",
		)
		if c.Firmware != "" {
			// A hung guest is reset by the watchdog as a board's would be.
			args = append(args, "-bios", c.Firmware, "-device", "i6300esb")
		}
	case "raspi3b":
		if c.DTB == "" {
			return nil, errors.New("qemu: raspi3b needs a DTB")
		}
		fi, err := os.Stat(c.Disk)
		if err != nil {
			return nil, fmt.Errorf("qemu: disk: %w", err)
		}
		if n := fi.Size(); n&(n-1) != 0 {
			return nil, fmt.Errorf("qemu: raspi3b SD card size %d is not a power of two", n)
		}
		// Exactly 1G: the Pi 3 has it and QEMU insists. thread=single
		// avoids ~30 s of MTTCG early-boot stalls on small hosts.
		args = append(args,
			"-M", "raspi3b", "-m", "1G", "-accel", "tcg,thread=single",
			"-dtb", c.DTB,
			"-serial", "null", "-serial", "stdio",
			"-drive", "file="+c.Disk+",if=sd,format=raw",
			"-netdev", netdev,
			"-device", "usb-net,netdev=n0",
		)
	default:
		return nil, fmt.Errorf("qemu: unknown machine %q", c.Machine)
	}
	switch {
	case c.Firmware == "":
		args = append(args, "-kernel", c.Kernel, "-initrd", c.Initrd, "-append", c.Cmdline())
	case c.Machine == "raspi3b":
		args = append(args, "-kernel", c.Firmware)
	}
	args = append(args,
		"-qmp", "unix:"+QMPPath(c.StateDir)+",server=on,wait=off",
		"-monitor", "none",
	)
	return args, nil
}

// Machine is a running QEMU.
type Machine struct {
	cfg     Config
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	Started time.Time
	Console *Watcher
}

// Binary finds qemu-system-aarch64 or explains how to get it.
func Binary(name string) (string, error) {
	if name == "" {
		name = "qemu-system-aarch64"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install qemu-system-arm (make deps)", name)
	}
	return p, nil
}

// Start launches QEMU. The console goes to cfg.Console and to the
// machine's Watcher, which tests and tools use to wait for markers.
func Start(ctx context.Context, cfg Config) (*Machine, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	bin, err := Binary(cfg.Binary)
	if err != nil {
		return nil, err
	}
	args, err := cfg.Args()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("qemu: state dir: %w", err)
	}
	os.Remove(QMPPath(cfg.StateDir))
	cmd := exec.Command(bin, args...)
	cmd.Stdin = nil
	m := &Machine{cfg: cfg, cmd: cmd, done: make(chan struct{}), Console: NewWatcher()}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// Own process group: a Ctrl-C on the terminal reaches us, and we decide
	// how QEMU stops (power-off first).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cfg.Log.Info("starting qemu", "machine", cfg.Machine, "cmd", bin+" "+strings.Join(args, " "))
	m.Started = time.Now()
	m.Console.start = m.Started
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu: start: %w", err)
	}
	go m.Console.consume(pr, cfg.Console)
	go func() {
		err := cmd.Wait()
		pw.Close()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		m.err = err
		m.Console.closed()
		close(m.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			m.Kill()
		case <-m.done:
		}
	}()
	return m, nil
}

// Done is closed when QEMU has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Wait waits for QEMU to exit and returns its exit error.
func (m *Machine) Wait() error {
	<-m.done
	return m.err
}

// Kill ends QEMU at once.
func (m *Machine) Kill() {
	if m.cmd.Process != nil {
		m.cmd.Process.Kill()
	}
}

// PowerDown asks the guest to power off (QMP system_powerdown: the virt
// machine raises its GPIO power key).
func (m *Machine) PowerDown() error {
	return QMP(QMPPath(m.cfg.StateDir), "system_powerdown")
}

// Stop powers the guest down and waits up to grace for QEMU to exit, then
// kills it. It reports whether the guest exited by itself.
func (m *Machine) Stop(grace time.Duration) (clean bool, err error) {
	select {
	case <-m.done:
		return true, m.err
	default:
	}
	if err := m.PowerDown(); err != nil {
		m.cfg.Log.Warn("qmp system_powerdown failed; killing qemu", "err", err)
		m.Kill()
		<-m.done
		return false, err
	}
	select {
	case <-m.done:
		return true, m.err
	case <-time.After(grace):
		m.cfg.Log.Warn("guest did not power off in time; killing qemu", "grace", grace)
		m.Kill()
		<-m.done
		return false, fmt.Errorf("guest did not power off within %s", grace)
	}
}

// QMP connects to a QMP socket, negotiates capabilities and runs command.
func QMP(sock, command string) error {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", sock, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	dec := json.NewDecoder(c)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	run := func(cmd string) error {
		if err := json.NewEncoder(c).Encode(map[string]string{"execute": cmd}); err != nil {
			return err
		}
		for {
			var resp map[string]json.RawMessage
			if err := dec.Decode(&resp); err != nil {
				return fmt.Errorf("qmp %s: %w", cmd, err)
			}
			if e, ok := resp["error"]; ok {
				return fmt.Errorf("qmp %s: %s", cmd, e)
			}
			if _, ok := resp["return"]; ok {
				return nil
			}
			// Asynchronous events may arrive first; skip them.
		}
	}
	if err := run("qmp_capabilities"); err != nil {
		return err
	}
	return run(command)
}

// Line is one console line and when it arrived.
type Line struct {
	Text string
	At   time.Duration // since QEMU started
}

// Watcher keeps the console lines and lets callers wait for a marker.
type Watcher struct {
	mu     sync.Mutex
	lines  []Line
	change chan struct{}
	eof    bool
	start  time.Time
}

// NewWatcher returns an empty watcher.
func NewWatcher() *Watcher { return &Watcher{change: make(chan struct{}), start: time.Now()} }

func (w *Watcher) consume(r io.Reader, tee io.Writer) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		s, err := br.ReadString('\n')
		if len(s) > 0 {
			if tee != nil {
				tee.Write([]byte(s))
			}
			w.add(strings.TrimRight(s, "\r\n"))
		}
		if err != nil {
			io.Copy(io.Discard, r)
			return
		}
	}
}

func (w *Watcher) add(text string) {
	w.mu.Lock()
	w.lines = append(w.lines, Line{Text: text, At: time.Since(w.start)})
	close(w.change)
	w.change = make(chan struct{})
	w.mu.Unlock()
}

func (w *Watcher) closed() {
	w.mu.Lock()
	w.eof = true
	close(w.change)
	w.change = make(chan struct{})
	w.mu.Unlock()
}

// Lines returns a copy of every line so far.
func (w *Watcher) Lines() []Line {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Line(nil), w.lines...)
}

// Text is the whole console so far.
func (w *Watcher) Text() string {
	var b strings.Builder
	for _, l := range w.Lines() {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// ErrConsoleClosed means QEMU exited before the awaited line appeared.
var ErrConsoleClosed = errors.New("qemu exited before the line appeared")

// WaitFor waits for the first line at or after index from that contains
// substr and returns it with its index. It fails when ctx ends or QEMU
// exits first.
func (w *Watcher) WaitFor(ctx context.Context, from int, substr string) (Line, int, error) {
	for {
		w.mu.Lock()
		for i := from; i < len(w.lines); i++ {
			if strings.Contains(w.lines[i].Text, substr) {
				l := w.lines[i]
				w.mu.Unlock()
				return l, i, nil
			}
		}
		from = len(w.lines)
		eof, ch := w.eof, w.change
		w.mu.Unlock()
		if eof {
			return Line{}, -1, fmt.Errorf("waiting for %q: %w", substr, ErrConsoleClosed)
		}
		select {
		case <-ctx.Done():
			return Line{}, -1, fmt.Errorf("waiting for %q: %w", substr, ctx.Err())
		case <-ch:
		}
	}
}
