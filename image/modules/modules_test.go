package modules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeTree writes the indexes of a tiny kernel: ext4 needs jbd2, mbcache
// and crc16 and soft-depends on "crc32c" (an alias of crc32c_generic);
// virtio_net needs net_failover which needs failover; gpio-pl061 is built in.
func fakeTree(t *testing.T) *Tree {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "lib", "modules", "6.1.0-test-arm64")
	files := map[string]string{
		"modules.dep": strings.Join([]string{
			"kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko",
			"kernel/lib/crc16.ko:",
			"kernel/fs/mbcache.ko:",
			"kernel/fs/jbd2/jbd2.ko:",
			"kernel/crypto/crc32c_generic.ko:",
			"kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko",
			"kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko",
			"kernel/net/core/failover.ko:",
			"kernel/drivers/mmc/host/sdhci-iproc.ko.xz: kernel/drivers/mmc/host/sdhci-pltfm.ko kernel/drivers/mmc/host/sdhci.ko",
			"kernel/drivers/mmc/host/sdhci-pltfm.ko: kernel/drivers/mmc/host/sdhci.ko",
			"kernel/drivers/mmc/host/sdhci.ko:",
		}, "\n") + "\n",
		"modules.softdep": "# Soft dependencies\nsoftdep ext4 pre: crc32c\n",
		"modules.alias":   "alias crc32c crc32c_generic\nalias crypto-crc32c crc32c_generic\nalias of:N*T*Cfoo* sdhci\n",
		"modules.builtin": "kernel/drivers/gpio/gpio-pl061.ko\n",
	}
	os.MkdirAll(filepath.Join(dir, "kernel"), 0o755)
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func names(c Closure) []string {
	var n []string
	for _, m := range c.Modules {
		n = append(n, m.Name)
	}
	return n
}

func TestClosureOrdersDependenciesFirst(t *testing.T) {
	tr := fakeTree(t)
	c, err := tr.Closure([]string{"virtio_net", "ext4", "gpio-pl061", "sdhci-iproc", "ledtrig-nothing?"})
	if err != nil {
		t.Fatal(err)
	}
	got := names(c)
	want := []string{"failover", "net_failover", "virtio_net", "crc32c_generic", "crc16", "mbcache", "jbd2", "ext4", "sdhci", "sdhci_pltfm", "sdhci_iproc"}
	if !slices.Equal(got, want) {
		t.Fatalf("order\n got %v\nwant %v", got, want)
	}
	if !slices.Equal(c.Builtin, []string{"gpio_pl061"}) {
		t.Errorf("builtin %v, want [gpio_pl061]", c.Builtin)
	}
	if !slices.Equal(c.Absent, []string{"ledtrig_nothing"}) {
		t.Errorf("absent %v, want [ledtrig_nothing]", c.Absent)
	}
	// modules.load names the uncompressed file the image stores.
	if !strings.Contains(c.LoadList(), "kernel/drivers/mmc/host/sdhci-iproc.ko\n") || strings.Contains(c.LoadList(), ".xz") {
		t.Errorf("load list:\n%s", c.LoadList())
	}
}

func TestClosureReportsMissingRequiredModules(t *testing.T) {
	tr := fakeTree(t)
	_, err := tr.Closure([]string{"ext4", "smsc95xx", "bcm2835_wdt"})
	if err == nil || !strings.Contains(err.Error(), "bcm2835_wdt, smsc95xx") {
		t.Fatalf("err %v, want both missing modules named", err)
	}
}

func TestRootsPerBoard(t *testing.T) {
	for _, tc := range []struct {
		board string
		must  []string
	}{
		{"qemu-arm64", []string{"virtio_pci", "virtio_blk", "virtio_net", "crc32c_generic", "ext4", "gpio_keys", "evdev", "sch_fq", "tcp_bbr", "vfat", "nls_cp437", "nls_ascii"}},
		{"rpi3", []string{"bcm2835", "dwc2", "smsc95xx", "cdc_ether", "leds-gpio", "bcm2835_wdt", "bcm2835-rng", "ext4"}},
		{"rpi4", []string{"sdhci-iproc", "genet", "mdio-bcm-unimac", "broadcom", "reset-raspberrypi", "xhci-pci", "iproc-rng200", "bcm2835_wdt", "ext4"}},
	} {
		r, err := Roots(tc.board)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tc.must {
			if !slices.Contains(r, m) {
				t.Errorf("%s roots lack %s", tc.board, m)
			}
		}
		// crc32c must precede ext4: u-root's loader does not follow softdeps.
		if slices.Index(r, "crc32c_generic") > slices.Index(r, "ext4") {
			t.Errorf("%s: crc32c_generic after ext4", tc.board)
		}
	}
	if _, err := Roots("rpi5"); err == nil {
		t.Error("unknown board accepted")
	}
}
