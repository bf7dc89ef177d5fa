package qemutest

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/snodebox/snodebox/image/assemble"
	"github.com/snodebox/snodebox/image/initramfs"
	"github.com/u-root/u-root/pkg/cpio"
)

// The initramfs layout contract (image builds, PID 1 reads), checked by
// content for every board — the Pi 4 image has no QEMU machine to boot in.
func TestInitramfsLayoutPerBoard(t *testing.T) {
	e := setup(t)
	b := assemble.New(e.repo, nil, nil)
	b.Version = "layout-test"
	dir := e.scratch(t, "layout-initramfs")
	for _, tc := range []struct {
		board string
		must  []string // modules (normalized names) the board cannot boot without
	}{
		{"qemu-arm64", []string{"virtio_pci", "virtio_blk", "virtio_net", "ext4", "gpio_keys", "evdev", "sch_fq", "tcp_bbr", "vfat"}},
		{"rpi3", []string{"bcm2835", "dwc2", "smsc95xx", "cdc_ether", "leds_gpio", "bcm2835_wdt", "bcm2835_rng", "ext4"}},
		{"rpi4", []string{"sdhci_iproc", "genet", "mdio_bcm_unimac", "broadcom", "reset_raspberrypi", "xhci_pci", "iproc_rng200", "bcm2835_wdt", "ext4"}},
	} {
		t.Run(tc.board, func(t *testing.T) {
			out := filepath.Join(dir, tc.board+".cpio.gz")
			st, err := b.Initramfs(context.Background(), tc.board, e.snoded, out)
			if err != nil {
				t.Fatal(err)
			}
			raw, files := readInitramfs(t, out)
			checkInit(t, files["init"])
			if c := files["dev/console"]; c.Mode&cpio.S_IFMT != cpio.S_IFCHR || c.Rmajor != 5 || c.Rminor != 1 {
				t.Errorf("dev/console: %+v, want char 5,1", c)
			}
			if c := files["dev/null"]; c.Mode&cpio.S_IFMT != cpio.S_IFCHR || c.Rmajor != 1 || c.Rminor != 3 {
				t.Errorf("dev/null: %+v, want char 1,3", c)
			}
			var info assemble.ImageInfo
			if err := json.Unmarshal(files["etc/snodebox/image.json"].Data, &info); err != nil {
				t.Fatalf("image.json: %v", err)
			}
			if info != (assemble.ImageInfo{Version: "layout-test", Board: tc.board, Kernel: st.Kernel}) {
				t.Errorf("image.json %+v", info)
			}
			checkModules(t, files, st, tc.must)
			checkE2fsprogs(t, files)

			// Same inputs, same bytes.
			again := filepath.Join(dir, tc.board+".again.cpio.gz")
			if _, err := b.Initramfs(context.Background(), tc.board, e.snoded, again); err != nil {
				t.Fatal(err)
			}
			if raw2, _ := os.ReadFile(again); !bytes.Equal(raw, raw2) {
				t.Error("two builds from the same inputs differ")
			}
		})
	}
}

func checkInit(t *testing.T, init initramfs.Entry) {
	t.Helper()
	if init.Mode&0o111 == 0 || len(init.Data) == 0 {
		t.Fatalf("init: mode %o, %d bytes", init.Mode, len(init.Data))
	}
	f, err := elf.NewFile(bytes.NewReader(init.Data))
	if err != nil {
		t.Fatalf("init is not ELF: %v", err)
	}
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("init machine %v, want aarch64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("init is dynamically linked; PID 1 has no loader before /lib is trusted")
		}
	}
}

func checkModules(t *testing.T, files map[string]initramfs.Entry, st assemble.InitramfsStats, must []string) {
	t.Helper()
	kdir := "lib/modules/" + st.Kernel + "/"
	list := strings.Fields(string(files["etc/snodebox/modules.load"].Data))
	if len(list) != st.Modules || len(list) == 0 {
		t.Fatalf("modules.load has %d entries, build reported %d", len(list), st.Modules)
	}
	pos := map[string]int{}
	for i, rel := range list {
		if !strings.HasSuffix(rel, ".ko") {
			t.Errorf("modules.load: %s is not an uncompressed .ko", rel)
		}
		m, ok := files[kdir+rel]
		if !ok {
			t.Errorf("modules.load names %s, not in the archive", rel)
			continue
		}
		if !bytes.HasPrefix(m.Data, []byte("\x7fELF")) {
			t.Errorf("%s is not a plain ELF module", rel)
		}
		pos[rel] = i
	}
	// Every module comes after each module it depends on (the archive's
	// own modules.dep, from depmod over just these modules).
	for _, line := range strings.Split(string(files[kdir+"modules.dep"].Data), "\n") {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, d := range strings.Fields(deps) {
			if pos[d] >= pos[mod] {
				t.Errorf("%s loads before its dependency %s", mod, d)
			}
		}
	}
	names := map[string]int{}
	for rel, i := range pos {
		names[strings.ReplaceAll(strings.TrimSuffix(filepath.Base(rel), ".ko"), "-", "_")] = i
	}
	for _, m := range must {
		if _, ok := names[m]; !ok {
			t.Errorf("module %s missing from the closure", m)
		}
	}
	// ext4's soft dependency: crc32c must already be there.
	if names["crc32c_generic"] >= names["ext4"] {
		t.Error("crc32c_generic does not load before ext4")
	}
}

func checkE2fsprogs(t *testing.T, files map[string]initramfs.Entry) {
	t.Helper()
	if _, ok := files["lib/ld-linux-aarch64.so.1"]; !ok {
		t.Error("no /lib/ld-linux-aarch64.so.1")
	}
	for _, bin := range []string{"sbin/mke2fs", "sbin/resize2fs", "sbin/e2fsck"} {
		en, ok := files[bin]
		if !ok {
			t.Errorf("%s missing", bin)
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(en.Data))
		if err != nil {
			t.Errorf("%s: %v", bin, err)
			continue
		}
		needed, _ := f.ImportedLibraries()
		for _, so := range needed {
			if _, ok := files["lib/aarch64-linux-gnu/"+so]; !ok {
				t.Errorf("%s needs %s, not in lib/aarch64-linux-gnu", bin, so)
			}
		}
	}
}

// Kernel Image and board device trees come out of the pinned package.
func TestKernelAndDeviceTreePerBoard(t *testing.T) {
	e := setup(t)
	dir := e.scratch(t, "layout-kernel")
	for _, tc := range []struct{ board, compatible string }{
		{"qemu-arm64", ""},
		{"rpi3", "raspberrypi,3-model-b"},
		{"rpi4", "raspberrypi,4-model-b"},
	} {
		img := filepath.Join(dir, tc.board+".Image")
		dtbOut := ""
		if tc.compatible != "" {
			dtbOut = filepath.Join(dir, tc.board+".dtb")
		}
		if _, err := e.b.Kernel(context.Background(), tc.board, img, dtbOut); err != nil {
			t.Fatalf("%s: %v", tc.board, err)
		}
		head := make([]byte, 64)
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		f.ReadAt(head, 0)
		f.Close()
		// arm64 Image header: magic "ARM\x64" at offset 56.
		if string(head[56:60]) != "ARM\x64" {
			t.Errorf("%s: %s is not an uncompressed arm64 Image", tc.board, img)
		}
		if dtbOut == "" {
			continue
		}
		out, err := exec.Command("fdtget", dtbOut, "/", "compatible").Output()
		if err != nil {
			t.Fatalf("%s: fdtget: %v", tc.board, err)
		}
		if !slices.Contains(strings.Fields(string(out)), tc.compatible) {
			t.Errorf("%s: DTB compatible %q lacks %s", tc.board, out, tc.compatible)
		}
	}
}

// readInitramfs reads a built initramfs: its bytes and its entries by name.
func readInitramfs(t *testing.T, path string) ([]byte, map[string]initramfs.Entry) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := initramfs.Read(raw)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]initramfs.Entry{}
	for _, en := range ents {
		files[en.Name] = en
	}
	return raw, files
}
