package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExampleFileParses(t *testing.T) {
	data, err := os.ReadFile("snodebox.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, "snodebox.example.toml")
	if err != nil {
		t.Fatalf("the shipped example does not parse: %v", err)
	}
	if c.Hostname != "snode-kitchen" || c.Network.Mode != "dhcp" || c.Ports.RPC != 22021 || c.Ports.Status != 80 || !c.Status.LANOnly {
		t.Errorf("example parsed to %+v", c)
	}
	if c.Tuning["vm.swappiness"] != "10" {
		t.Errorf("tuning %v, want vm.swappiness=10", c.Tuning)
	}
	if len(c.NTP.Servers) != 3 {
		t.Errorf("ntp servers %v", c.NTP.Servers)
	}
}

func TestMissingFileMeansDefaults(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "none.toml"))
	if err != nil || !reflect.DeepEqual(c, Defaults()) {
		t.Fatalf("Load(missing) = %+v, %v; want defaults, nil", c, err)
	}
}

func TestValidation(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		wantErr []string // substrings, each must appear; nil = valid
		check   func(t *testing.T, c Config)
	}{
		{name: "empty file is defaults", file: "", check: func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c, Defaults()) {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "static network", file: "[network]\nmode = \"static\"\naddress = \"192.168.1.50/24\"\ngateway = \"192.168.1.1\"\ndns = [\"192.168.1.1\"]\n",
			check: func(t *testing.T, c Config) {
				if c.Network.Address != "192.168.1.50/24" || c.Network.Gateway != "192.168.1.1" {
					t.Errorf("network %+v", c.Network)
				}
			}},
		{name: "static without address", file: "[network]\nmode = \"static\"\ngateway = \"192.168.1.1\"\n",
			wantErr: []string{"t.toml:1: network.address: static mode needs an address"}},
		{name: "address without prefix", file: "[network]\nmode = \"static\"\naddress = \"192.168.1.50\"\ngateway = \"192.168.1.1\"\n",
			wantErr: []string{"t.toml:3: network.address"}},
		{name: "unknown mode", file: "\n[network]\nmode = \"wifi\"\n", wantErr: []string{`t.toml:3: network.mode: must be "dhcp" or "static", got "wifi"`}},
		{name: "unknown top-level key", file: "hostnme = \"x\"\n", wantErr: []string{"t.toml:1: hostnme: unknown key"}},
		{name: "unknown nested key", file: "[ports]\nrpc = 22021\nstatuss = 8080\n", wantErr: []string{"t.toml:3: ports.statuss: unknown key"}},
		{name: "unknown table", file: "[wifi]\nssid = \"home\"\n", wantErr: []string{"t.toml:2: wifi.ssid: unknown key"}},
		{name: "port out of range", file: "[ports]\nrpc = 70000\n", wantErr: []string{"t.toml:2: ports.rpc: must be 1–65535, got 70000"}},
		{name: "same ports", file: "[ports]\nrpc = 8080\nstatus = 8080\n", wantErr: []string{"ports.status: must differ"}},
		{name: "status page off", file: "[ports]\nstatus = 0\n", check: func(t *testing.T, c Config) {
			if c.Ports.Status != 0 {
				t.Errorf("status port %d", c.Ports.Status)
			}
		}},
		{name: "bad hostname", file: "hostname = \"my node\"\n", wantErr: []string{"t.toml:1: hostname"}},
		{name: "bad registry", file: "registry = \"oxend:localhost\"\n", wantErr: []string{"t.toml:1: registry"}},
		{name: "good registry", file: "registry = \"devnet:https://10.0.0.1:22021\"\n", check: func(t *testing.T, c Config) {
			if c.Registry != "devnet:https://10.0.0.1:22021" {
				t.Errorf("registry %q", c.Registry)
			}
		}},
		{name: "bad update URL", file: "[update]\nchannel = \"ftp://x/y\"\n", wantErr: []string{"t.toml:2: update.channel"}},
		{name: "bad gpio", file: "[board]\nled_gpio = 99\n", wantErr: []string{"t.toml:2: board.led_gpio"}},
		{name: "bad ntp", file: "[ntp]\nservers = [\"pool.ntp.org:abc\"]\n", wantErr: []string{"t.toml:2: ntp.servers"}},
		{name: "no ntp servers is allowed", file: "[ntp]\nservers = []\n", check: func(t *testing.T, c Config) {
			if len(c.NTP.Servers) != 0 {
				t.Errorf("servers %v", c.NTP.Servers)
			}
		}},
		{name: "tuning quoted and bare names", file: "[tuning]\n\"net.core.somaxconn\" = 8192\nvm.swappiness = 5\n", check: func(t *testing.T, c Config) {
			want := TuningValues{"net.core.somaxconn": "8192", "vm.swappiness": "5"}
			if !reflect.DeepEqual(c.Tuning, want) {
				t.Errorf("tuning %v, want %v", c.Tuning, want)
			}
		}},
		{name: "unknown tuning name", file: "[tuning]\n\"net.core.nope\" = 1\n", wantErr: []string{"t.toml:2: tuning.net.core.nope: unknown tuning key"}},
		{name: "wrong type", file: "[ports]\nrpc = \"22021\"\n", wantErr: []string{"rpc"}},
		{name: "syntax error has a line", file: "hostname = \"x\"\n[ports\nrpc = 1\n", wantErr: []string{"t.toml:2"}},
		{name: "several problems at once", file: "[ports]\nrpc = 0\n[network]\nmode = \"x\"\n", wantErr: []string{"t.toml:2: ports.rpc", "t.toml:4: network.mode"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.file), "t.toml")
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tc.check != nil {
					tc.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !reflect.DeepEqual(c, Defaults()) {
				t.Errorf("an invalid file must yield the defaults, got %+v", c)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *config.Error", err)
			}
		})
	}
}

func TestCmdline(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		line    string
		want    Cmdline
		wantErr string
	}{
		{line: "console=ttyAMA0 panic=-1", want: Cmdline{StatusPort: -1, OMQPort: -1}},
		{line: "console=ttyAMA0 panic=-1 snode.data=/dev/vda1 snode.ntp=10.0.2.2:1123,pool.ntp.org snode.rpc_port=22021 snode.status_port=80 snode.status_lan_only=0 snode.registry=self",
			want: Cmdline{Data: "/dev/vda1", NTP: []string{"10.0.2.2:1123", "pool.ntp.org"}, NTPSet: true, RPCPort: 22021, StatusPort: 80, OMQPort: -1, StatusLANOnly: &no, Registry: "self"}},
		{line: "snode.data=LABEL=snode-data snode.ntp= snode.status_lan_only=1\n",
			want: Cmdline{Data: "LABEL=snode-data", NTPSet: true, StatusPort: -1, OMQPort: -1, StatusLANOnly: &yes}},
		{line: `snode.data="/dev/mmcblk0p4" snode.future=1`, want: Cmdline{Data: "/dev/mmcblk0p4", StatusPort: -1, OMQPort: -1, Unknown: []string{"snode.future"}}},
		{line: "snode.watchdog=0 snode.slot=B", want: Cmdline{StatusPort: -1, OMQPort: -1, Watchdog: &no, Slot: "B"}},
		// U-Boot's script writes exactly A or B; anything else is a broken script.
		{line: "snode.slot=b", want: Cmdline{StatusPort: -1, OMQPort: -1}, wantErr: "snode.slot"},
		{line: "snode.health_window=90s", want: Cmdline{StatusPort: -1, OMQPort: -1, HealthWindow: 90 * time.Second}},
		{line: "snode.health_window=5s", want: Cmdline{StatusPort: -1, OMQPort: -1}, wantErr: "snode.health_window"},
		{line: "snode.omq_port=22020", want: Cmdline{StatusPort: -1, OMQPort: 22020}},
		{line: "snode.omq_port=x", want: Cmdline{StatusPort: -1, OMQPort: -1}, wantErr: "snode.omq_port"},
		{line: "snode.rpc_port=99999", want: Cmdline{StatusPort: -1, OMQPort: -1}, wantErr: "snode.rpc_port"},
		{line: "snode.registry=bogus", want: Cmdline{StatusPort: -1, OMQPort: -1}, wantErr: "snode.registry"},
	}
	for _, tc := range tests {
		got, err := ParseCmdline(tc.line)
		if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("ParseCmdline(%q) error %v, want %q", tc.line, err, tc.wantErr)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseCmdline(%q)\n got %+v\nwant %+v", tc.line, got, tc.want)
		}
	}
}

func TestCmdlineOverridesFile(t *testing.T) {
	c, err := Parse([]byte("[ports]\nrpc = 1234\nstatus = 8080\n[ntp]\nservers = [\"a.example\"]\n[status]\nlan_only = true\n"), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ParseCmdline("snode.rpc_port=22021 snode.ntp= snode.status_lan_only=0")
	if err != nil {
		t.Fatal(err)
	}
	c.Apply(cl)
	if time.Duration(c.Update.HealthWindow) != DefaultHealthWindow {
		t.Errorf("health window %v without snode.health_window, want the default %v", time.Duration(c.Update.HealthWindow), DefaultHealthWindow)
	}
	if c.Ports.RPC != 22021 || c.Ports.Status != 8080 || len(c.NTP.Servers) != 0 || c.Status.LANOnly {
		t.Errorf("after Apply: ports %+v ntp %v lan_only %v", c.Ports, c.NTP.Servers, c.Status.LANOnly)
	}
}

func TestHealthWindow(t *testing.T) {
	c, err := Parse([]byte("[update]\nhealth_window = \"90s\"\n"), "t.toml")
	if err != nil || time.Duration(c.Update.HealthWindow) != 90*time.Second {
		t.Fatalf("health_window 90s: %v, %v", time.Duration(c.Update.HealthWindow), err)
	}
	for _, bad := range []string{`"soon"`, `"5s"`, `"48h"`} {
		_, err := Parse([]byte("[update]\nhealth_window = "+bad+"\n"), "t.toml")
		if err == nil || !strings.Contains(err.Error(), "health_window") {
			t.Errorf("health_window = %s: error %v, want one naming update.health_window", bad, err)
		}
	}
}

func TestExampleForTheCard(t *testing.T) {
	// The copy on a new card sets nothing: it parses to the defaults.
	c, err := Parse(Example(), "snodebox.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Defaults()) {
		t.Errorf("the card's snodebox.toml is not all defaults:\n%+v\n%+v", c, Defaults())
	}
	if !strings.Contains(string(Example()), "# hostname = ") {
		t.Error("the card's snodebox.toml lost the commented settings")
	}
}
