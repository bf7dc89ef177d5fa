package link

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fakeIf struct {
	name, typ                  string
	device, wireless, enslaved bool
}

func fakeSysNet(t *testing.T, ifs []fakeIf) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range ifs {
		dir := filepath.Join(root, f.name)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "type"), []byte(f.typ+"\n"), 0o644)
		if f.device {
			os.Symlink("../../devices/x", filepath.Join(dir, "device"))
		}
		if f.wireless {
			os.MkdirAll(filepath.Join(dir, "wireless"), 0o755)
		}
		if f.enslaved {
			os.Symlink("../br0", filepath.Join(dir, "master"))
		}
	}
	return root
}

func TestFirstWired(t *testing.T) {
	tests := []struct {
		name string
		ifs  []fakeIf
		want string
	}{
		{"pi 4", []fakeIf{{name: "lo", typ: "772"}, {name: "eth0", typ: "1", device: true}, {name: "wlan0", typ: "1", device: true, wireless: true}}, "eth0"},
		{"pi 3 usb ethernet", []fakeIf{{name: "lo", typ: "772"}, {name: "enxb827eb000001", typ: "1", device: true}}, "enxb827eb000001"},
		{"qemu usb-net", []fakeIf{{name: "usb0", typ: "1", device: true}}, "usb0"},
		{"eth before usb, eth0 before eth1", []fakeIf{{name: "usb0", typ: "1", device: true}, {name: "eth1", typ: "1", device: true}, {name: "eth0", typ: "1", device: true}}, "eth0"},
		{"virtual and enslaved skipped", []fakeIf{{name: "veth0", typ: "1"}, {name: "eth0", typ: "1", device: true, enslaved: true}, {name: "eth1", typ: "1", device: true}}, "eth1"},
		{"only wireless", []fakeIf{{name: "wlan0", typ: "1", device: true, wireless: true}}, ""},
		{"not ethernet", []fakeIf{{name: "can0", typ: "280", device: true}}, ""},
	}
	for _, tc := range tests {
		got, ok := FirstWired(fakeSysNet(t, tc.ifs))
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: FirstWired = %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
}

func TestHasDefaultRoute(t *testing.T) {
	route4 := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	v4default := route4 + "eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
	v4subnet := route4 + "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
	v6default := "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n"
	v6loReject := "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n"
	tests := []struct {
		name      string
		v4, v6    string
		wantRoute bool
	}{
		{"ipv4 default via gateway", v4default, "", true},
		{"only a subnet route", v4subnet, "", false},
		{"ipv6 default from router advertisement", route4, v6default, true},
		{"ipv6 reject route on lo", route4, v6loReject, false},
		{"nothing", "", "", false},
	}
	for _, tc := range tests {
		dir := t.TempDir()
		if tc.v4 != "" {
			os.WriteFile(filepath.Join(dir, "route"), []byte(tc.v4), 0o644)
		}
		if tc.v6 != "" {
			os.WriteFile(filepath.Join(dir, "ipv6_route"), []byte(tc.v6), 0o644)
		}
		if got := HasDefaultRoute(dir); got != tc.wantRoute {
			t.Errorf("%s: HasDefaultRoute = %v, want %v", tc.name, got, tc.wantRoute)
		}
	}
}

func TestResolvConfAndHostname(t *testing.T) {
	p := filepath.Join(t.TempDir(), "etc", "resolv.conf")
	if err := WriteResolvConf(p, []string{"10.0.2.3", "2001:db8::53"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if !strings.Contains(string(b), "nameserver 10.0.2.3\nnameserver 2001:db8::53\n") {
		t.Errorf("resolv.conf:\n%s", b)
	}
	if got := HostnameFor("0123456789abcdef"); got != "snode-01234567" {
		t.Errorf("HostnameFor = %q", got)
	}
}
