package qemutest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/snodebox/snodebox/appliance/config"
	"github.com/snodebox/snodebox/image/assemble"
	"github.com/snodebox/snodebox/image/sdcard"
	"github.com/snodebox/snodebox/image/slot"
)

// The Pi images are checked by content: QEMU has no Pi 4, and its raspi3b
// does not run the GPU firmware. Everything the boot ROM, the firmware,
// U-Boot and PID 1 read must be where they look.
func TestPiImagesHoldWhatTheBoardBootsFrom(t *testing.T) {
	e := setup(t)
	b := *e.b
	b.Version = "content-test"
	dir := e.scratch(t, "content")
	for _, tc := range []struct {
		board    string
		firmware []string
		dtb      string
		modules  []string // SD, Ethernet, USB, LED, watchdog
	}{
		{"rpi3", []string{"bootcode.bin", "start.elf", "fixup.dat"}, "bcm2837-rpi-3-b.dtb", []string{"bcm2835", "smsc95xx", "dwc2", "leds_gpio", "bcm2835_wdt"}},
		{"rpi4", []string{"start4.elf", "fixup4.dat"}, "bcm2711-rpi-4-b.dtb", []string{"sdhci_iproc", "genet", "xhci_pci", "leds_gpio", "bcm2835_wdt"}},
	} {
		t.Run(tc.board, func(t *testing.T) {
			ctx := context.Background()
			out := filepath.Join(dir, tc.board+".img")
			st, err := b.Image(ctx, assemble.ImageOptions{Board: tc.board, Out: out, Snoded: e.snoded})
			if err != nil {
				t.Fatal(err)
			}
			checkLayout(t, out, st)
			card, err := sdcard.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			boot := filepath.Join(dir, tc.board+"-boot")
			os.RemoveAll(boot)
			if err := card.CopyOut(ctx, slot.PartBoot, boot); err != nil {
				t.Fatal(err)
			}
			for _, f := range append(append([]string{}, tc.firmware...), tc.dtb, "u-boot.bin", "boot.scr", "config.txt", slot.StateFile, config.FileName) {
				if fi, err := os.Stat(filepath.Join(boot, f)); err != nil || fi.Size() == 0 {
					t.Errorf("boot partition: %s missing or empty (%v)", f, err)
				}
			}
			cfg, _ := os.ReadFile(filepath.Join(boot, "config.txt"))
			for _, want := range []string{"arm_64bit=1", "kernel=u-boot.bin", "enable_uart=1"} {
				if !bytes.Contains(cfg, []byte("\n"+want+"\n")) {
					t.Errorf("config.txt lacks %q:\n%s", want, cfg)
				}
			}
			checkUBoot(t, e, filepath.Join(boot, "u-boot.bin"), tc.board)
			checkScript(t, filepath.Join(boot, "boot.scr"), "console=ttyS1,115200")
			if data, _ := os.ReadFile(filepath.Join(boot, slot.StateFile)); true {
				bs, err := slot.Parse(data)
				if err != nil || !reflect.DeepEqual(bs, slot.Fresh()) {
					t.Errorf("bootstate.txt %q: %s, %v", data, bs, err)
				}
			}
			if data, _ := os.ReadFile(filepath.Join(boot, config.FileName)); true {
				if c, err := config.Parse(data, config.FileName); err != nil || !reflect.DeepEqual(c, config.Defaults()) {
					t.Errorf("the card's snodebox.toml does not parse to the defaults: %v", err)
				}
			}
			for _, s := range slot.Slots {
				sd := filepath.Join(dir, tc.board+"-slot"+s)
				os.RemoveAll(sd)
				if err := card.CopyOut(ctx, slot.Partition(s), sd); err != nil {
					t.Fatal(err)
				}
				m, err := slot.ReadManifest(sd)
				if err != nil {
					t.Fatalf("slot %s: %v", s, err)
				}
				if m.Board != tc.board || m.Version != "content-test" || m.BuildID != st.Manifest.BuildID {
					t.Errorf("slot %s manifest %+v", s, m)
				}
				if err := m.Verify(sd); err != nil {
					t.Errorf("slot %s files do not match the manifest: %v", s, err)
				}
				if _, err := os.Stat(filepath.Join(sd, slot.DTBDir, "broadcom", tc.dtb)); err != nil {
					t.Errorf("slot %s: no %s", s, tc.dtb)
				}
				_, files := readInitramfs(t, filepath.Join(sd, slot.InitrdFile))
				checkModules(t, files, st.Initramfs, tc.modules)
			}
		})
	}
}

// checkLayout: MBR types, 1 MiB alignment, the boot flag, and sizes that
// fit a 4 GB card with the raw image within 256 MiB.
func checkLayout(t *testing.T, path string, st assemble.ImageStats) {
	t.Helper()
	card, err := sdcard.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]byte{1: 0x0c, 2: 0x0c, 3: 0x0c, 4: 0x83}
	for n, typ := range want {
		p := card.Parts[n]
		if p.Type != typ || p.StartLBA%2048 != 0 || p.Sectors%2048 != 0 {
			t.Errorf("partition %d: type %#x start %d sectors %d; want type %#x, 1 MiB aligned", n, p.Type, p.StartLBA, p.Sectors, typ)
		}
		if (n == 1) != p.Bootable {
			t.Errorf("partition %d bootable=%v", n, p.Bootable)
		}
	}
	if card.Parts[1].StartLBA != 2048 {
		t.Errorf("boot partition starts at sector %d, want 2048", card.Parts[1].StartLBA)
	}
	if st.Bytes > 256<<20 || st.Bytes > 4e9 {
		t.Errorf("image is %d bytes, want at most 256 MiB", st.Bytes)
	}
	t.Logf("%s: %d MiB, slot %.1f MB", filepath.Base(path), st.Bytes>>20, float64(st.SlotBytes)/1e6)
}

// checkUBoot: the boot partition's u-boot.bin is the pinned package's.
func checkUBoot(t *testing.T, e *env, got, board string) {
	t.Helper()
	l, err := e.b.Lock()
	if err != nil {
		t.Fatal(err)
	}
	ub := assemble.UBootBinary[board]
	pkgPath := ub.Path
	pin, ok := l.Get(ub.Package)
	if !ok {
		t.Fatal("no u-boot pin")
	}
	root, err := e.b.Cache.Unpack(context.Background(), pin)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(got)
	b, _ := os.ReadFile(filepath.Join(root, pkgPath))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("u-boot.bin (%d bytes) is not the package's %s (%d bytes)", len(a), pkgPath, len(b))
	}
}

// checkScript: a legacy U-Boot image of type script (mkimage -T script)
// whose text is the generated A/B script.
func checkScript(t *testing.T, path, console string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 72 {
		t.Fatalf("boot.scr: %v (%d bytes)", err, len(b))
	}
	if magic := binary.BigEndian.Uint32(b[0:4]); magic != 0x27051956 {
		t.Errorf("boot.scr magic %#x, want U-Boot's 0x27051956", magic)
	}
	if typ := b[30]; typ != 6 { // IH_TYPE_SCRIPT
		t.Errorf("boot.scr image type %d, want 6 (script)", typ)
	}
	for _, want := range []string{"snode.slot=${snode_slot}", console, "fatwrite"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("boot.scr lacks %q", want)
		}
	}
}

// Two builds from the same inputs are byte-identical.
func TestImageBuildIsReproducible(t *testing.T) {
	e := setup(t)
	b := *e.b
	b.Version = "repro-test"
	dir := e.scratch(t, "repro")
	var sums [2][32]byte
	for i := range sums {
		out := filepath.Join(dir, "qemu-arm64-"+string(rune('a'+i))+".img")
		st, err := b.Image(context.Background(), assemble.ImageOptions{Board: "qemu-arm64", Out: out, Snoded: e.snoded})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			checkLayout(t, out, st)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = sha256.Sum256(data)
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds differ: %x vs %x", sums[0], sums[1])
	}
}
