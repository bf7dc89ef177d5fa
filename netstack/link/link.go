// Package link brings the device's network up: loopback, then DHCP (u-root's
// dhclient) or a static address on the first wired link, resolv.conf and the
// hostname. IPv6 SLAAC comes from the kernel (accept_ra/autoconf sysctls set
// by appliance/tuning before links come up).
package link

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Static is a fixed IP configuration.
type Static struct {
	Address netip.Prefix
	Gateway netip.Addr
	DNS     []netip.Addr
}

// Config is how to bring the link up.
type Config struct {
	Interface  string  // "" = first wired link
	Static     *Static // nil = DHCP
	ExtraDNS   []netip.Addr
	Hostname   string // sent to the DHCP server so routers list the node by name
	ResolvConf string // default /etc/resolv.conf
	SysNet     string // default /sys/class/net
	// WaitLink is how long to wait for a wired link to appear (driver
	// modules bind asynchronously) and come up.
	WaitLink time.Duration
	Log      *slog.Logger
}

// State is the link as the status page shows it.
type State struct {
	Interface string
	Mode      string // "dhcp" or "static"
	Address   string // CIDR
	Gateway   string
	DNS       []string
	Lease     time.Duration
	Err       string
}

// Manager keeps the link configured (DHCP renewals).
type Manager struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	state State
	renew time.Duration
	onUp  func(State)
}

// OnUp registers f to be called after every successful (re)configuration
// done by Run, so the node can follow a changed address.
func (m *Manager) OnUp(f func(State)) {
	m.mu.Lock()
	m.onUp = f
	m.mu.Unlock()
}

// New makes a Manager.
func New(cfg Config) *Manager {
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.SysNet == "" {
		cfg.SysNet = "/sys/class/net"
	}
	if cfg.WaitLink <= 0 {
		cfg.WaitLink = 15 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Manager{cfg: cfg, log: cfg.Log}
}

// State returns the current link state.
func (m *Manager) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.state
	s.DNS = append([]string(nil), s.DNS...)
	return s
}

func (m *Manager) setState(s State) {
	m.mu.Lock()
	m.state = s
	m.mu.Unlock()
}

// LoopbackUp brings lo up (the kernel gives it 127.0.0.1 and ::1).
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// Up finds the link, waits for it and configures it once.
func (m *Manager) Up(ctx context.Context) (State, error) {
	name := m.cfg.Interface
	if name == "" {
		var err error
		name, err = m.waitWired(ctx)
		if err != nil {
			m.setState(State{Err: err.Error()})
			return m.State(), err
		}
	}
	if _, err := dhclient.IfUp(name, m.cfg.WaitLink); err != nil {
		err = fmt.Errorf("link %s up: %w", name, err)
		m.setState(State{Interface: name, Err: err.Error()})
		return m.State(), err
	}
	var st State
	var err error
	if m.cfg.Static != nil {
		st, err = m.static(name)
	} else {
		st, err = m.dhcp(ctx, name)
	}
	if err != nil {
		st.Err = err.Error()
	}
	m.setState(st)
	return st, err
}

// Run renews the DHCP lease at half its lifetime (or retries a failed
// configuration) until ctx ends. With a static address there is nothing to do.
func (m *Manager) Run(ctx context.Context) error {
	if m.cfg.Static != nil {
		<-ctx.Done()
		return nil
	}
	retry := 10 * time.Second
	for {
		wait := retry
		m.mu.Lock()
		if m.state.Err == "" && m.renew > 0 {
			wait = m.renew
		}
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		st, err := m.Up(ctx)
		if err != nil {
			m.log.Warn("network", "err", err, "retry", retry)
			retry = min(retry*2, 5*time.Minute)
			continue
		}
		retry = 10 * time.Second
		m.mu.Lock()
		f := m.onUp
		m.mu.Unlock()
		if f != nil {
			f(st)
		}
	}
}

func (m *Manager) waitWired(ctx context.Context) (string, error) {
	deadline := time.Now().Add(m.cfg.WaitLink)
	for {
		if name, ok := FirstWired(m.cfg.SysNet); ok {
			return name, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no wired network interface in %s after %v", m.cfg.SysNet, m.cfg.WaitLink)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// FirstWired picks the first wired Ethernet interface under sysNet
// (/sys/class/net): type 1 (Ethernet), backed by a device, not wireless, not
// a bridge/bond member. Names sort so eth0 comes before eth1 and enp… /
// usb0 are taken when there is no ethN.
func FirstWired(sysNet string) (string, bool) {
	ents, err := os.ReadDir(sysNet)
	if err != nil {
		return "", false
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		dir := filepath.Join(sysNet, n)
		if n == "lo" {
			continue
		}
		if t, err := os.ReadFile(filepath.Join(dir, "type")); err != nil || strings.TrimSpace(string(t)) != "1" {
			continue
		}
		if exists(filepath.Join(dir, "wireless")) || exists(filepath.Join(dir, "phy80211")) || exists(filepath.Join(dir, "master")) {
			continue
		}
		if !exists(filepath.Join(dir, "device")) {
			continue // virtual: bridge, veth, dummy
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return "", false
	}
	sort.Slice(names, func(i, j int) bool {
		pi, pj := wiredRank(names[i]), wiredRank(names[j])
		if pi != pj {
			return pi < pj
		}
		return names[i] < names[j]
	})
	return names[0], true
}

func wiredRank(n string) int {
	switch {
	case strings.HasPrefix(n, "eth"):
		return 0
	case strings.HasPrefix(n, "en"):
		return 1
	case strings.HasPrefix(n, "usb"):
		return 2
	}
	return 3
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

func (m *Manager) dhcp(ctx context.Context, name string) (State, error) {
	st := State{Interface: name, Mode: "dhcp"}
	iface, err := netlink.LinkByName(name)
	if err != nil {
		return st, fmt.Errorf("dhcp %s: %w", name, err)
	}
	var mods []dhcpv4.Modifier
	if m.cfg.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(m.cfg.Hostname)))
	}
	mods = append(mods, dhcpv4.WithRequestedOptions(dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionIPAddressLeaseTime))
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	results := dhclient.SendRequests(dctx, []netlink.Link{iface}, true, false, dhclient.Config{
		Timeout: 3 * time.Second, Retries: 4, V4ClientIdentifier: true, Modifiers4: mods,
	}, m.cfg.WaitLink)
	var errs []error
	for r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		// Configure also writes dhclient.ResolvConfPath (/etc/resolv.conf).
		if err := r.Lease.Configure(); err != nil {
			return st, fmt.Errorf("dhcp %s: configure: %w", name, err)
		}
		ack, _ := r.Lease.Message()
		if ack == nil {
			continue
		}
		ones, _ := ack.SubnetMask().Size()
		st.Address = fmt.Sprintf("%s/%d", ack.YourIPAddr, ones)
		if gw := ack.Router(); len(gw) > 0 {
			st.Gateway = gw[0].String()
		}
		dns := ack.DNS()
		for _, d := range dns {
			st.DNS = append(st.DNS, d.String())
		}
		if len(m.cfg.ExtraDNS) > 0 || m.cfg.ResolvConf != dhclient.ResolvConfPath {
			for _, d := range m.cfg.ExtraDNS {
				st.DNS = append(st.DNS, d.String())
			}
			if err := WriteResolvConf(m.cfg.ResolvConf, st.DNS); err != nil {
				return st, err
			}
		}
		st.Lease = ack.IPAddressLeaseTime(24 * time.Hour)
		m.mu.Lock()
		m.renew = max(st.Lease/2, time.Minute)
		m.mu.Unlock()
		return st, nil
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("no answer"))
	}
	return st, fmt.Errorf("dhcp %s: %w", name, errors.Join(errs...))
}

func (m *Manager) static(name string) (State, error) {
	s := m.cfg.Static
	st := State{Interface: name, Mode: "static", Address: s.Address.String(), Gateway: s.Gateway.String()}
	iface, err := netlink.LinkByName(name)
	if err != nil {
		return st, fmt.Errorf("static %s: %w", name, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: s.Address.Addr().AsSlice(), Mask: net.CIDRMask(s.Address.Bits(), s.Address.Addr().BitLen())}}
	if err := netlink.AddrReplace(iface, addr); err != nil {
		return st, fmt.Errorf("static %s: address %s: %w", name, s.Address, err)
	}
	if s.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: iface.Attrs().Index, Gw: s.Gateway.AsSlice()}
		if err := netlink.RouteReplace(r); err != nil {
			return st, fmt.Errorf("static %s: default route via %s: %w", name, s.Gateway, err)
		}
	}
	for _, d := range append(append([]netip.Addr(nil), s.DNS...), m.cfg.ExtraDNS...) {
		st.DNS = append(st.DNS, d.String())
	}
	if err := WriteResolvConf(m.cfg.ResolvConf, st.DNS); err != nil {
		return st, err
	}
	return st, nil
}

// WriteResolvConf writes nameserver lines (the resolver reads at most 3).
func WriteResolvConf(path string, dns []string) error {
	var b strings.Builder
	b.WriteString("# written by snoded\n")
	for _, d := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	return nil
}

// SetHostname sets the kernel hostname.
func SetHostname(name string) error {
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("sethostname %q: %w", name, err)
	}
	return nil
}

// HostnameFor is the default hostname: snode-<first 8 hex of the ed25519 key>.
func HostnameFor(ed25519Hex string) string {
	if len(ed25519Hex) > 8 {
		ed25519Hex = ed25519Hex[:8]
	}
	return "snode-" + ed25519Hex
}

// HasDefaultRoute reports whether the routing tables under procNet
// (/proc/net) hold a usable IPv4 or IPv6 default route.
func HasDefaultRoute(procNet string) bool {
	if procNet == "" {
		procNet = "/proc/net"
	}
	return defaultRoute4(filepath.Join(procNet, "route")) || defaultRoute6(filepath.Join(procNet, "ipv6_route"))
}

// /proc/net/route: Iface Destination Gateway Flags ... Mask (hex, host order).
func defaultRoute4(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 || fs[1] != "00000000" || fs[7] != "00000000" {
			continue
		}
		flags, err := strconv.ParseUint(fs[3], 16, 32)
		if err == nil && flags&unix.RTF_UP != 0 {
			return true
		}
	}
	return false
}

// /proc/net/ipv6_route: dest destlen src srclen nexthop metric refcnt use flags iface.
func defaultRoute6(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[1] != "00" || fs[0] != strings.Repeat("0", 32) || fs[9] == "lo" {
			continue
		}
		flags, err := strconv.ParseUint(fs[8], 16, 32)
		if err == nil && flags&unix.RTF_UP != 0 && flags&unix.RTF_REJECT == 0 {
			return true
		}
	}
	return false
}
