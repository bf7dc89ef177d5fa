package tuning

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTree makes a /proc/sys and /sys with the given files and contents.
func fakeTree(t *testing.T, files map[string]string) (procSys, sys string) {
	t.Helper()
	root := t.TempDir()
	for p, v := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, "proc/sys"), filepath.Join(root, "sys")
}

func byName(rs []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range rs {
		m[r.Name] = r
	}
	return m
}

func TestApplyEarlyReadsBackAppliedValues(t *testing.T) {
	procSys, sys := fakeTree(t, map[string]string{
		"proc/sys/net/core/default_qdisc":                         "pfifo_fast\n",
		"proc/sys/net/ipv4/tcp_congestion_control":                "cubic\n",
		"proc/sys/net/core/somaxconn":                             "128\n",
		"proc/sys/net/core/netdev_max_backlog":                    "1000\n",
		"proc/sys/net/ipv4/tcp_max_syn_backlog":                   "128\n",
		"proc/sys/net/core/rmem_max":                              "212992\n",
		"proc/sys/net/core/wmem_max":                              "212992\n",
		"proc/sys/net/ipv4/tcp_rmem":                              "4096\t131072\t6291456\n",
		"proc/sys/net/ipv4/tcp_wmem":                              "4096\t16384\t4194304\n",
		"proc/sys/net/ipv4/tcp_fastopen":                          "1\n",
		"proc/sys/net/ipv4/tcp_slow_start_after_idle":             "1\n",
		"proc/sys/net/ipv6/conf/default/accept_ra":                "0\n",
		"proc/sys/net/ipv6/conf/default/autoconf":                 "0\n",
		"proc/sys/vm/dirty_expire_centisecs":                      "3000\n",
		"proc/sys/vm/dirty_writeback_centisecs":                   "500\n",
		"sys/devices/system/cpu/cpufreq/policy0/scaling_governor": "performance\n",
		// vm.swappiness is missing: this kernel has no swap support.
	})
	var rlimitAsked uint64
	res := Apply(Options{
		ProcSys: procSys, Sys: sys, Scope: Early,
		Env:       Env{RAMBytes: 1 << 30},
		Overrides: map[string]string{"net.core.somaxconn": "8192"},
		Rlimit: func(name string, v uint64) (uint64, error) {
			rlimitAsked = v
			return v, nil
		},
	})
	got := byName(res)
	tests := []struct {
		name, value, def, source string
		unavailable              bool
	}{
		{"net.core.default_qdisc", "fq", "fq", FromDefault, false},
		{"net.ipv4.tcp_congestion_control", "bbr", "bbr|cubic", FromDefault, false},
		{"net.core.somaxconn", "8192", "4096", FromConfig, false},
		{"net.core.rmem_max", "4194304", "4194304", FromDefault, false}, // 1 GiB / 256
		{"net.ipv4.tcp_rmem", "4096 131072 4194304", "4096 131072 4194304", FromDefault, false},
		{"net.ipv4.tcp_fastopen", "3", "3", FromDefault, false},
		{"vm.dirty_expire_centisecs", "6000", "6000", FromDefault, false},
		{"vm.swappiness", "", "10", FromDefault, true},
		{"cpu.governor", "schedutil", "schedutil|ondemand", FromDefault, false},
		{"rlimit.nofile", "65536", "65536", FromDefault, false},
	}
	for _, tc := range tests {
		r, ok := got[tc.name]
		if !ok {
			t.Errorf("%s: not reported", tc.name)
			continue
		}
		if r.Value != tc.value || r.Default != tc.def || r.Source != tc.source {
			t.Errorf("%s = {value %q default %q source %q}, want {%q %q %q}", tc.name, r.Value, r.Default, r.Source, tc.value, tc.def, tc.source)
		}
		if tc.unavailable != strings.HasPrefix(r.Error, "unavailable") {
			t.Errorf("%s: error %q, unavailable want %v", tc.name, r.Error, tc.unavailable)
		}
	}
	if rlimitAsked != 65536 {
		t.Errorf("rlimit asked for %d, want 65536", rlimitAsked)
	}
	if _, ok := got["block.scheduler"]; ok {
		t.Error("data-disk settings applied in the early phase")
	}
	b, _ := os.ReadFile(filepath.Join(procSys, "net/core/somaxconn"))
	if string(b) != "8192\n" {
		t.Errorf("somaxconn file holds %q, want the override", b)
	}
}

func TestApplyDataDiskPicksScheduler(t *testing.T) {
	procSys, sys := fakeTree(t, map[string]string{
		"sys/block/mmcblk0/queue/scheduler":     "[none] mq-deadline kyber\n",
		"sys/block/mmcblk0/queue/read_ahead_kb": "512\n",
	})
	got := byName(Apply(Options{ProcSys: procSys, Sys: sys, Scope: DataDisk, DataDisk: "mmcblk0"}))
	if r := got["block.scheduler"]; r.Value != "mq-deadline" || r.Error != "" {
		t.Errorf("scheduler %+v, want mq-deadline applied", r)
	}
	if r := got["block.read_ahead_kb"]; r.Value != "128" || r.Error != "" {
		t.Errorf("read_ahead_kb %+v, want 128", r)
	}
	noDisk := byName(Apply(Options{ProcSys: procSys, Sys: sys, Scope: DataDisk}))
	if r := noDisk["block.scheduler"]; !strings.HasPrefix(r.Error, "unavailable") {
		t.Errorf("without a data disk: %+v, want unavailable", r)
	}
}

func TestRefusedValueIsReportedNotFatal(t *testing.T) {
	procSys, sys := fakeTree(t, map[string]string{"proc/sys/net/core/somaxconn": "128\n"})
	// A directory where the knob should be: every write fails.
	if err := os.MkdirAll(filepath.Join(procSys, "vm/swappiness"), 0o755); err != nil {
		t.Fatal(err)
	}
	got := byName(Apply(Options{ProcSys: procSys, Sys: sys, Rlimit: func(string, uint64) (uint64, error) { return 1024, nil }}))
	if r := got["vm.swappiness"]; r.Error == "" {
		t.Errorf("swappiness %+v: want an error", r)
	}
	if r := got["net.core.somaxconn"]; r.Value != "4096" {
		t.Errorf("a refused knob stopped the others: somaxconn %+v", r)
	}
}

func TestBufferCapsFollowRAM(t *testing.T) {
	for _, tc := range []struct {
		ram  uint64
		want uint64
	}{
		{128 << 20, 1 << 20}, // floor
		{512 << 20, 2 << 20},
		{1 << 30, 4 << 20},
		{8 << 30, 16 << 20}, // cap
	} {
		if got := bufMax(Env{RAMBytes: tc.ram}); got != tc.want {
			t.Errorf("bufMax(%d MiB) = %d, want %d", tc.ram>>20, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		ok          bool
	}{
		{"net.core.somaxconn", "8192", true},
		{"rlimit.nofile", "many", false},
		{"net.core.nonsense", "1", false},
		{"vm.swappiness", "", false},
		{"cpu.governor", "performance", true},
	} {
		if err := Validate(tc.name, tc.value); (err == nil) != tc.ok {
			t.Errorf("Validate(%s=%q) = %v, want ok=%v", tc.name, tc.value, err, tc.ok)
		}
	}
}

func TestEverySettingIsDocumented(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Settings {
		if s.Doc == "" || s.Default == nil {
			t.Errorf("%s lacks a doc or default", s.Name)
		}
		if seen[s.Name] {
			t.Errorf("%s listed twice", s.Name)
		}
		seen[s.Name] = true
	}
}
