// Package tuning holds every kernel knob snodebox sets (DESIGN §6) as a
// named, documented default in one table, applies them (with config
// overrides) and reports what the kernel actually took, so the status page
// shows applied values rather than intentions. A knob the kernel lacks is
// reported as unavailable; it never stops the boot.
package tuning

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Kind says where a setting lives.
type Kind int

const (
	Sysctl Kind = iota // /proc/sys/<name with dots as slashes>
	Block              // /sys/block/<data disk>/queue/<file>
	CPU                // every /sys/devices/system/cpu/cpufreq/policy*/<file>
	Rlimit             // setrlimit(2) of PID 1, inherited by everything it starts
)

// Scope says when a setting can be applied.
type Scope int

const (
	Early    Scope = iota // before links come up (sysctls, CPU, limits)
	DataDisk              // once the data partition's disk is known
)

// Setting is one tunable.
type Setting struct {
	Name  string // stable key used in config [tuning] and on the status page
	Kind  Kind
	Scope Scope
	File  string // Block/CPU: the file under the queue/policy directory
	// Default is the value written. For values with alternatives ("a|b"),
	// the first one the kernel accepts wins (scheduler, governor, qdisc).
	Default func(env Env) string
	Doc     string
}

// Env is what defaults depend on.
type Env struct {
	RAMBytes uint64
}

func fixed(v string) func(Env) string { return func(Env) string { return v } }

// bufMax caps socket buffers at 1/256 of RAM between 1 MiB and 16 MiB: a
// 1 GiB Pi 3 gets 4 MiB, enough for a 100 Mbit/s × 300 ms relay path,
// without letting a few hundred peers pin all memory in buffers.
func bufMax(env Env) uint64 {
	v := env.RAMBytes / 256
	return min(max(v, 1<<20), 16<<20)
}

// bufCap is bufMax as a sysctl value (rmem_max, wmem_max).
func bufCap(env Env) string { return strconv.FormatUint(bufMax(env), 10) }

// tcpMem is a tcp_rmem/tcp_wmem autotuning triple: 4 KiB minimum, the
// kernel's default def, and bufMax as the maximum.
func tcpMem(def int) func(Env) string {
	return func(env Env) string { return fmt.Sprintf("4096 %d %d", def, bufMax(env)) }
}

// Settings is the table. Order matters only for readability of the report.
var Settings = []Setting{
	{Name: "net.core.default_qdisc", Kind: Sysctl, Default: fixed("fq"),
		Doc: "fair queueing with pacing on every new interface: needed by bbr and keeps one busy peer from starving others"},
	{Name: "net.ipv4.tcp_congestion_control", Kind: Sysctl, Default: fixed("bbr|cubic"),
		Doc: "bbr keeps relay latency low on home uplinks with deep buffers (module tcp_bbr); cubic when bbr is absent"},
	{Name: "net.core.somaxconn", Kind: Sysctl, Default: fixed("4096"),
		Doc: "accept queue for bursts of client and peer connections"},
	{Name: "net.core.netdev_max_backlog", Kind: Sysctl, Default: fixed("4096"),
		Doc: "packets queued per CPU before the stack drops them; a Pi's softirq falls behind in bursts"},
	{Name: "net.ipv4.tcp_max_syn_backlog", Kind: Sysctl, Default: fixed("4096"),
		Doc: "half-open connections kept while a handshake burst is served"},
	{Name: "net.core.rmem_max", Kind: Sysctl, Default: bufCap,
		Doc: "socket receive buffer cap, 1/256 of RAM within 1–16 MiB"},
	{Name: "net.core.wmem_max", Kind: Sysctl, Default: bufCap,
		Doc: "socket send buffer cap, 1/256 of RAM within 1–16 MiB"},
	{Name: "net.ipv4.tcp_rmem", Kind: Sysctl, Default: tcpMem(131072),
		Doc: "TCP receive autotuning min/default/max; max follows rmem_max"},
	{Name: "net.ipv4.tcp_wmem", Kind: Sysctl, Default: tcpMem(16384),
		Doc: "TCP send autotuning min/default/max; max follows wmem_max"},
	{Name: "net.ipv4.tcp_fastopen", Kind: Sysctl, Default: fixed("3"),
		Doc: "TCP Fast Open as client and server: saves a round trip for repeat peers"},
	{Name: "net.ipv4.tcp_slow_start_after_idle", Kind: Sysctl, Default: fixed("0"),
		Doc: "keep the congestion window on idle keep-alive peer connections"},
	{Name: "net.ipv6.conf.default.accept_ra", Kind: Sysctl, Default: fixed("1"),
		Doc: "accept IPv6 router advertisements on links that come up later (SLAAC)"},
	{Name: "net.ipv6.conf.default.autoconf", Kind: Sysctl, Default: fixed("1"),
		Doc: "form SLAAC addresses from advertised prefixes"},
	{Name: "vm.dirty_expire_centisecs", Kind: Sysctl, Default: fixed("6000"),
		Doc: "dirty pages may wait 60 s (kernel: 30 s), matching ext4 commit=60, so flash sees fewer, larger writes; bbolt fsyncs what must be durable"},
	{Name: "vm.dirty_writeback_centisecs", Kind: Sysctl, Default: fixed("1500"),
		Doc: "flusher wakes every 15 s (kernel: 5 s): fewer wake-ups and flash writes"},
	{Name: "vm.swappiness", Kind: Sysctl, Default: fixed("10"),
		Doc: "there is no swap on SD cards; keep the kernel from preferring it if zram is ever added"},
	{Name: "block.scheduler", Kind: Block, Scope: DataDisk, File: "scheduler", Default: fixed("mq-deadline|none"),
		Doc: "mq-deadline bounds write latency on SD/eMMC; none where the device has no choice (virtio)"},
	{Name: "block.read_ahead_kb", Kind: Block, Scope: DataDisk, File: "read_ahead_kb", Default: fixed("128"),
		Doc: "modest read-ahead: bbolt reads pages at random, larger read-ahead wastes flash bandwidth"},
	{Name: "cpu.governor", Kind: CPU, File: "scaling_governor", Default: fixed("schedutil|ondemand"),
		Doc: "scale CPU frequency with load: full speed for crypto bursts, cool and frugal when idle"},
	{Name: "rlimit.nofile", Kind: Rlimit, Default: fixed("65536"),
		Doc: "file descriptors: every client and peer connection is one"},
}

// Lookup finds a setting by name.
func Lookup(name string) (Setting, bool) {
	for _, s := range Settings {
		if s.Name == name {
			return s, true
		}
	}
	return Setting{}, false
}

// Names lists every setting name, sorted (for config validation messages).
func Names() []string {
	out := make([]string, len(Settings))
	for i, s := range Settings {
		out[i] = s.Name
	}
	sort.Strings(out)
	return out
}

// Source values in a Result.
const (
	FromDefault = "default"
	FromConfig  = "config"
)

// Result is one applied setting as the status page reports it.
type Result struct {
	Name    string
	Value   string // what the kernel reports after writing ("" when unavailable)
	Default string
	Source  string // "default" or "config"
	Error   string // why it is unavailable or was refused; "" when applied
}

// Options for Apply.
type Options struct {
	ProcSys   string // default /proc/sys (tests pass a fake tree)
	Sys       string // default /sys
	Env       Env
	Scope     Scope
	DataDisk  string            // kernel disk name (mmcblk0, vda) for Block settings
	Overrides map[string]string // config [tuning]: name → value
	// Rlimit applies an rlimit setting; nil means setrlimit(2) on this process.
	Rlimit func(name string, value uint64) (applied uint64, err error)
}

// Apply writes every setting of opts.Scope and reads each back.
func Apply(opts Options) []Result {
	if opts.ProcSys == "" {
		opts.ProcSys = "/proc/sys"
	}
	if opts.Sys == "" {
		opts.Sys = "/sys"
	}
	if opts.Rlimit == nil {
		opts.Rlimit = setRlimit
	}
	var out []Result
	for _, s := range Settings {
		if s.Scope != opts.Scope {
			continue
		}
		r := Result{Name: s.Name, Default: s.Default(opts.Env), Source: FromDefault}
		want := r.Default
		if v, ok := opts.Overrides[s.Name]; ok {
			want, r.Source = v, FromConfig
		}
		val, err := apply(s, want, opts)
		r.Value = val
		if err != nil {
			r.Error = err.Error()
		}
		out = append(out, r)
	}
	return out
}

// ErrUnavailable marks a knob this kernel or board does not have.
var ErrUnavailable = errors.New("unavailable")

func apply(s Setting, want string, opts Options) (string, error) {
	switch s.Kind {
	case Sysctl:
		return writeFirst([]string{filepath.Join(opts.ProcSys, strings.ReplaceAll(s.Name, ".", "/"))}, want)
	case Block:
		if opts.DataDisk == "" {
			return "", fmt.Errorf("%w: no data disk", ErrUnavailable)
		}
		return writeFirst([]string{filepath.Join(opts.Sys, "block", opts.DataDisk, "queue", s.File)}, want)
	case CPU:
		paths, _ := filepath.Glob(filepath.Join(opts.Sys, "devices/system/cpu/cpufreq/policy*", s.File))
		if len(paths) == 0 {
			return "", fmt.Errorf("%w: no cpufreq policy", ErrUnavailable)
		}
		return writeFirst(paths, want)
	case Rlimit:
		n, err := strconv.ParseUint(want, 10, 64)
		if err != nil {
			return "", fmt.Errorf("%s: %q is not a number", s.Name, want)
		}
		got, err := opts.Rlimit(s.Name, n)
		if err != nil {
			return strconv.FormatUint(got, 10), fmt.Errorf("setrlimit %s %d: %w", s.Name, n, err)
		}
		return strconv.FormatUint(got, 10), nil
	}
	return "", fmt.Errorf("%s: unknown kind", s.Name)
}

// writeFirst writes the first alternative of want ("a|b") that every path
// accepts, then reads the value back from the first path.
func writeFirst(paths []string, want string) (string, error) {
	if _, err := os.Stat(paths[0]); errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: %s missing", ErrUnavailable, paths[0])
	}
	var errs []error
	ok := false
	for _, alt := range strings.Split(want, "|") {
		alt = strings.TrimSpace(alt)
		var werr error
		for _, p := range paths {
			if err := os.WriteFile(p, []byte(alt+"\n"), 0o644); err != nil {
				werr = fmt.Errorf("write %s=%q: %w", p, alt, err)
				break
			}
		}
		if werr == nil {
			ok = true
			break
		}
		errs = append(errs, werr)
	}
	got, rerr := readValue(paths[0])
	if rerr != nil {
		return "", rerr
	}
	if !ok {
		return got, errors.Join(errs...)
	}
	return got, nil
}

// readValue reads a knob; for files listing choices ("[mq-deadline] none")
// it returns the selected one, and it normalises tabs (tcp_rmem).
func readValue(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read back %s: %w", path, err)
	}
	v := strings.Join(strings.Fields(string(b)), " ")
	if i := strings.IndexByte(v, '['); i >= 0 {
		if j := strings.IndexByte(v[i:], ']'); j > 0 {
			return v[i+1 : i+j], nil
		}
	}
	return v, nil
}

// Validate checks a config override before it reaches the kernel.
func Validate(name, value string) error {
	s, ok := Lookup(name)
	if !ok {
		return fmt.Errorf("unknown tuning key %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	if strings.TrimSpace(value) == "" {
		return fmt.Errorf("tuning %s: empty value", name)
	}
	if s.Kind == Rlimit {
		if _, err := strconv.ParseUint(value, 10, 64); err != nil {
			return fmt.Errorf("tuning %s: %q is not a number", name, value)
		}
	}
	if strings.ContainsAny(value, "\n\x00") {
		return fmt.Errorf("tuning %s: value contains a newline", name)
	}
	return nil
}
