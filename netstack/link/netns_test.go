package link

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// These tests bring a real link up: the test binary re-runs itself inside a
// network namespace (ip netns exec) as the "device", wired by a veth pair to
// a namespace where a DHCP server answers. Nothing leaves the namespaces.

const childEnv = "SNODEBOX_LINK_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

type childResult struct {
	State State
	Err   string
	Route bool
	Addrs []string
}

// child runs in the device namespace.
func child(mode string) int {
	cfg := Config{Interface: "eth0", Hostname: "snode-test", WaitLink: 10 * time.Second}
	if mode == "static" {
		cfg.Static = &Static{
			Address: netip.MustParsePrefix("10.99.0.60/24"),
			Gateway: netip.MustParseAddr("10.99.0.1"),
			DNS:     []netip.Addr{netip.MustParseAddr("10.99.0.53")},
		}
	}
	if err := LoopbackUp(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	m := New(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := m.Up(ctx)
	r := childResult{State: st, Route: HasDefaultRoute("/proc/net")}
	if err != nil {
		r.Err = err.Error()
	}
	if l, err := netlink.LinkByName("eth0"); err == nil {
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		for _, a := range addrs {
			r.Addrs = append(r.Addrs, a.IPNet.String())
		}
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

type testNet struct {
	dev, srv string // namespace names
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func setupNet(t *testing.T) testNet {
	t.Helper()
	n := testNet{dev: fmt.Sprintf("snbdev%d", os.Getpid()), srv: fmt.Sprintf("snbsrv%d", os.Getpid())}
	veth := fmt.Sprintf("snbv%d", os.Getpid()%100000)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", n.dev).Run()
		exec.Command("ip", "netns", "del", n.srv).Run()
		os.RemoveAll(filepath.Join("/etc/netns", n.dev))
	})
	run(t, "ip", "netns", "add", n.dev)
	run(t, "ip", "netns", "add", n.srv)
	run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", veth+"s")
	run(t, "ip", "link", "set", veth, "netns", n.dev)
	run(t, "ip", "link", "set", veth+"s", "netns", n.srv)
	run(t, "ip", "-n", n.dev, "link", "set", veth, "name", "eth0")
	run(t, "ip", "-n", n.srv, "link", "set", veth+"s", "name", "lan0")
	run(t, "ip", "-n", n.srv, "addr", "add", "10.99.0.1/24", "dev", "lan0")
	run(t, "ip", "-n", n.srv, "link", "set", "lan0", "up")
	run(t, "ip", "-n", n.srv, "link", "set", "lo", "up")
	// ip netns exec bind-mounts /etc/netns/NAME/resolv.conf over
	// /etc/resolv.conf: the device's resolv.conf never touches the host's.
	os.MkdirAll(filepath.Join("/etc/netns", n.dev), 0o755)
	os.WriteFile(filepath.Join("/etc/netns", n.dev, "resolv.conf"), []byte("# placeholder\n"), 0o644)
	return n
}

// startDHCP serves leases of 10.99.0.50/24 in the server namespace.
func startDHCP(t *testing.T, nsName string) {
	t.Helper()
	srvNS, err := netns.GetFromName(nsName)
	if err != nil {
		t.Fatal(err)
	}
	defer srvNS.Close()
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		var typ dhcpv4.MessageType
		switch m.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			typ = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			typ = dhcpv4.MessageTypeAck
		default:
			return
		}
		resp, err := dhcpv4.NewReplyFromRequest(m,
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithYourIP(net.IPv4(10, 99, 0, 50)),
			dhcpv4.WithServerIP(net.IPv4(10, 99, 0, 1)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 1))),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithRouter(net.IPv4(10, 99, 0, 1)),
			dhcpv4.WithDNS(net.IPv4(10, 99, 0, 53)),
			dhcpv4.WithLeaseTime(3600),
		)
		if err != nil {
			return
		}
		conn.WriteTo(resp.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort})
	}
	// The server's socket must be created inside its namespace; this
	// thread enters it and is discarded afterwards.
	errc := make(chan error, 1)
	srvc := make(chan *server4.Server, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(srvNS); err != nil {
			errc <- err
			return
		}
		s, err := server4.NewServer("lan0", &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, handler)
		if err != nil {
			errc <- err
			return
		}
		srvc <- s
	}()
	select {
	case err := <-errc:
		t.Fatalf("dhcp server: %v", err)
	case s := <-srvc:
		go s.Serve()
		t.Cleanup(func() { s.Close() })
	}
}

func runChild(t *testing.T, n testNet, mode string) childResult {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", n.dev, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("device side: %v: %s", err, out)
	}
	var r childResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("device side output %q: %v", out, err)
	}
	return r
}

func TestDHCPLeaseConfiguresTheLink(t *testing.T) {
	n := setupNet(t)
	startDHCP(t, n.srv)
	r := runChild(t, n, "dhcp")
	if r.Err != "" {
		t.Fatalf("Up: %s", r.Err)
	}
	st := r.State
	if st.Interface != "eth0" || st.Mode != "dhcp" || st.Address != "10.99.0.50/24" || st.Gateway != "10.99.0.1" || st.Lease != time.Hour {
		t.Errorf("state %+v", st)
	}
	if len(st.DNS) != 1 || st.DNS[0] != "10.99.0.53" {
		t.Errorf("dns %v", st.DNS)
	}
	if !r.Route {
		t.Error("no default route after the lease")
	}
	if len(r.Addrs) != 1 || r.Addrs[0] != "10.99.0.50/24" {
		t.Errorf("eth0 addresses %v", r.Addrs)
	}
	b, _ := os.ReadFile(filepath.Join("/etc/netns", n.dev, "resolv.conf"))
	if !strings.Contains(string(b), "nameserver 10.99.0.53") {
		t.Errorf("resolv.conf:\n%s", b)
	}
}

func TestStaticAddress(t *testing.T) {
	n := setupNet(t)
	r := runChild(t, n, "static")
	if r.Err != "" {
		t.Fatalf("Up: %s", r.Err)
	}
	if r.State.Mode != "static" || !r.Route || len(r.Addrs) != 1 || r.Addrs[0] != "10.99.0.60/24" {
		t.Errorf("static: %+v", r)
	}
	b, _ := os.ReadFile(filepath.Join("/etc/netns", n.dev, "resolv.conf"))
	if !strings.Contains(string(b), "nameserver 10.99.0.53") {
		t.Errorf("resolv.conf:\n%s", b)
	}
}

func TestNoDHCPServerIsAnError(t *testing.T) {
	n := setupNet(t)
	r := runChild(t, n, "dhcp")
	if r.Err == "" || r.Route {
		t.Errorf("without a DHCP server: %+v, want an error and no route", r)
	}
}
