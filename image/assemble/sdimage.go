package assemble

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/snodebox/snodebox/appliance/config"
	"github.com/snodebox/snodebox/image/debpkg"
	"github.com/snodebox/snodebox/image/release"
	"github.com/snodebox/snodebox/image/sdcard"
	"github.com/snodebox/snodebox/image/slot"
)

// ImageOptions are the inputs of one SD image besides the pinned packages.
type ImageOptions struct {
	Board  string
	Out    string
	Snoded string // prebuilt static arm64 snoded; "" builds one
	Layout sdcard.Layout
	// SlotBootArgs go into slot A's slot.env (extra kernel arguments the
	// boot script adds for that slot).
	SlotBootArgs string
	// ReleaseKeys and AdminKeys are the minisign public keys (file
	// contents) the system trusts for updates and for admin pushes; they
	// live in the slot, covered by its manifest.
	ReleaseKeys, AdminKeys []byte
}

// ImageStats describes a written image.
type ImageStats struct {
	Board     string
	Version   string
	Kernel    string
	Bytes     int64
	SlotBytes int64 // files in slot A
	BootBytes int64 // files on the boot partition
	Manifest  slot.Manifest
	Initramfs InitramfsStats
	Took      time.Duration
}

// UBootBinary is where each board's U-Boot is in its package.
var UBootBinary = map[string]struct{ Package, Path string }{
	"qemu-arm64": {"u-boot-qemu", "usr/lib/u-boot/qemu_arm64/u-boot.bin"},
	"rpi3":       {"u-boot-rpi", "usr/lib/u-boot/rpi_arm64/u-boot.bin"},
	"rpi4":       {"u-boot-rpi", "usr/lib/u-boot/rpi_arm64/u-boot.bin"},
}

// PiFirmware are the firmware files each Pi's boot ROM and GPU load from
// the boot partition (raspi-firmware's usr/lib/raspi-firmware). The Pi 4
// boots from its EEPROM and needs no bootcode.bin.
var PiFirmware = map[string][]string{
	"rpi3": {"bootcode.bin", "start.elf", "fixup.dat"},
	"rpi4": {"start4.elf", "fixup4.dat"},
}

// PiDTBGlob picks the board family's device trees from the kernel package;
// the firmware loads the one for the board it runs on from the boot
// partition's root, applies config.txt, and hands it to U-Boot.
var PiDTBGlob = map[string]string{
	"rpi3": "broadcom/bcm2837-rpi-*.dtb",
	"rpi4": "broadcom/bcm2711-rpi-*.dtb",
}

// ConfigTxt is the Pi firmware's config.txt: 64-bit, U-Boot as the
// "kernel", the UART console on GPIO 14/15.
func ConfigTxt(board string) string {
	return `# snodebox: settings for the Raspberry Pi firmware. U-Boot (u-boot.bin)
# then picks the system slot (boot.scr). Node settings are in snodebox.toml.
arm_64bit=1
kernel=u-boot.bin
# Serial console on GPIO 14/15 at 115200 baud (also fixes the core clock
# the mini UART depends on).
enable_uart=1
# The node has no display: the least memory for the GPU.
gpu_mem=16
# No rainbow splash, no firmware overscan handling.
disable_splash=1
disable_overscan=1
`
}

// Image builds a flashable SD-card image for a board.
func (b *Builder) Image(ctx context.Context, o ImageOptions) (ImageStats, error) {
	start := time.Now()
	st := ImageStats{Board: o.Board, Version: b.version()}
	if _, ok := UBootBinary[o.Board]; !ok {
		return st, fmt.Errorf("image: unknown board %q (qemu-arm64, rpi3, rpi4)", o.Board)
	}
	if o.Layout == (sdcard.Layout{}) {
		o.Layout = sdcard.DefaultLayout
	}
	work, err := os.MkdirTemp(b.Paths.Build(), ".image-")
	if err != nil {
		if err := os.MkdirAll(b.Paths.Build(), 0o755); err != nil {
			return st, err
		}
		if work, err = os.MkdirTemp(b.Paths.Build(), ".image-"); err != nil {
			return st, err
		}
	}
	defer os.RemoveAll(work)
	slotDir := filepath.Join(work, "slot")
	bootDir := filepath.Join(work, "boot")
	b.progressf("image: %s: slot A (kernel, initramfs, device trees)\n", o.Board)
	m, ist, err := b.SlotTree(ctx, SlotSpec{Board: o.Board, Snoded: o.Snoded, BootArgs: o.SlotBootArgs, ReleaseKeys: o.ReleaseKeys, AdminKeys: o.AdminKeys}, slotDir)
	if err != nil {
		return st, err
	}
	st.Manifest, st.Initramfs, st.Kernel = m, ist, m.Kernel
	b.progressf("image: %s: boot partition (U-Boot, boot script, firmware, snodebox.toml)\n", o.Board)
	if err := b.BootTree(ctx, o.Board, bootDir); err != nil {
		return st, err
	}
	seed := o.Board + " " + st.Version
	// Both slots start with the same system: a card whose slot A is
	// damaged still boots, from B.
	if err := sdcard.Build(ctx, sdcard.Spec{Out: o.Out, Layout: o.Layout, Boot: bootDir, SlotA: slotDir, SlotB: slotDir, Seed: seed, Progress: b.Progress, Scratch: work, Epoch: sourceDateEpoch()}); err != nil {
		return st, err
	}
	fi, err := os.Stat(o.Out)
	if err != nil {
		return st, err
	}
	st.Bytes = fi.Size()
	st.SlotBytes = treeBytes(slotDir)
	st.BootBytes = treeBytes(bootDir)
	st.Took = time.Since(start)
	b.progressf("image: %s: %s (%d MiB, slot A %.1f MB, boot %.1f MB, version %s) in %.1fs\n",
		o.Board, o.Out, st.Bytes>>20, float64(st.SlotBytes)/1e6, float64(st.BootBytes)/1e6, st.Version, st.Took.Seconds())
	return st, nil
}

// sourceDateEpoch is SOURCE_DATE_EPOCH when set (the reproducible-builds
// convention), else a fixed date: the image's timestamps never come from
// the clock.
func sourceDateEpoch() time.Time {
	if v, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil && v > 0 {
		return time.Unix(v, 0)
	}
	return time.Unix(1767225600, 0) // 2026-01-01
}

func treeBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// SlotSpec is what goes into one slot.
type SlotSpec struct {
	Board    string
	Snoded   string // prebuilt static arm64 snoded; "" builds one
	BootArgs string // slot.env's slot_bootargs
	// Trusted keys (minisign public key files or lines), written as
	// release-keys.txt and admin-keys.txt; nil writes none.
	ReleaseKeys, AdminKeys []byte
}

// SlotTree writes one slot's files into dir: the kernel Image, the board's
// initramfs, its DTBs (Pi boards), slot.env, the trusted key lists and
// manifest.json.
func (b *Builder) SlotTree(ctx context.Context, sp SlotSpec, dir string) (slot.Manifest, InitramfsStats, error) {
	var ist InitramfsStats
	board, snoded, bootArgs := sp.Board, sp.Snoded, sp.BootArgs
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return slot.Manifest{}, ist, err
	}
	kver, err := b.Kernel(ctx, board, filepath.Join(dir, slot.KernelFile), "")
	if err != nil {
		return slot.Manifest{}, ist, err
	}
	if g, ok := PiDTBGlob[board]; ok {
		t, _, err := b.KernelTree(ctx)
		if err != nil {
			return slot.Manifest{}, ist, err
		}
		if err := copyGlob(filepath.Join(t.Root, "usr", "lib", "linux-image-"+t.KVer), g, filepath.Join(dir, slot.DTBDir), false); err != nil {
			return slot.Manifest{}, ist, err
		}
	}
	if ist, err = b.Initramfs(ctx, board, snoded, filepath.Join(dir, slot.InitrdFile)); err != nil {
		return slot.Manifest{}, ist, err
	}
	if strings.ContainsAny(bootArgs, "\n\"") {
		return slot.Manifest{}, ist, fmt.Errorf("slot boot arguments %q: no quotes or newlines", bootArgs)
	}
	if err := os.WriteFile(filepath.Join(dir, slot.EnvFile), []byte("slot_bootargs="+bootArgs+"\n"), 0o644); err != nil {
		return slot.Manifest{}, ist, err
	}
	for name, keys := range map[string][]byte{release.SlotReleaseKeys: sp.ReleaseKeys, release.SlotAdminKeys: sp.AdminKeys} {
		if keys == nil {
			continue
		}
		parsed, err := release.ParsePublicKeys(keys)
		if err != nil {
			return slot.Manifest{}, ist, fmt.Errorf("%s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), release.KeysText(parsed), 0o644); err != nil {
			return slot.Manifest{}, ist, err
		}
	}
	m, err := slot.NewManifest(dir, b.version(), board, kver)
	if err != nil {
		return m, ist, err
	}
	return m, ist, os.WriteFile(filepath.Join(dir, slot.ManifestFile), m.Marshal(), 0o644)
}

// BootTree writes the boot partition's files into dir.
func (b *Builder) BootTree(ctx context.Context, board, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	l, err := b.Lock()
	if err != nil {
		return err
	}
	ub := UBootBinary[board]
	pin, ok := l.Get(ub.Package)
	if !ok {
		return fmt.Errorf("lock: no %s pin (run `snodectl image lock --refresh`)", ub.Package)
	}
	root, err := b.Cache.Unpack(ctx, pin)
	if err != nil {
		return err
	}
	if err := sdcard.CopyFile(filepath.Join(root, ub.Path), filepath.Join(dir, "u-boot.bin")); err != nil {
		return fmt.Errorf("u-boot for %s: %w", board, err)
	}
	if fw, ok := PiFirmware[board]; ok {
		fp := l.ByRole(debpkg.RoleFirmware)
		if len(fp) != 1 {
			return fmt.Errorf("lock: want one %s pin", debpkg.RoleFirmware)
		}
		froot, err := b.Cache.Unpack(ctx, fp[0])
		if err != nil {
			return err
		}
		for _, f := range fw {
			if err := sdcard.CopyFile(filepath.Join(froot, "usr", "lib", "raspi-firmware", f), filepath.Join(dir, f)); err != nil {
				return fmt.Errorf("pi firmware: %w", err)
			}
		}
		t, _, err := b.KernelTree(ctx)
		if err != nil {
			return err
		}
		if err := copyGlob(filepath.Join(t.Root, "usr", "lib", "linux-image-"+t.KVer), PiDTBGlob[board], dir, true); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "config.txt"), []byte(ConfigTxt(board)), 0o644); err != nil {
			return err
		}
	}
	script, err := slot.BootScript(board)
	if err != nil {
		return err
	}
	if err := compileScript(ctx, script, dir); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, slot.StateFile), slot.Fresh().Marshal(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, config.FileName), config.Example(), 0o644); err != nil {
		return err
	}
	return nil
}

// compileScript writes boot.cmd and the mkimage-wrapped boot.scr into dir.
// mkimage stamps the header with SOURCE_DATE_EPOCH when set, so the script
// image is reproducible.
func compileScript(ctx context.Context, script, dir string) error {
	src := filepath.Join(dir, "boot.cmd")
	if err := os.WriteFile(src, []byte(script), 0o644); err != nil {
		return err
	}
	mk, err := exec.LookPath("mkimage")
	if err != nil {
		return fmt.Errorf("mkimage not found: install Debian package u-boot-tools (make deps)")
	}
	cmd := exec.CommandContext(ctx, mk, "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", "snodebox A/B", "-d", src, filepath.Join(dir, slot.ScriptFile))
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(sourceDateEpoch().Unix(), 10))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkimage boot.scr: %w\n%s", err, out)
	}
	return nil
}

// copyGlob copies the files matching glob under root into dst, keeping
// their relative paths, or only their names when flat.
func copyGlob(root, glob, dst string, flat bool) error {
	m, err := filepath.Glob(filepath.Join(root, glob))
	if err != nil || len(m) == 0 {
		return fmt.Errorf("no %s in %s", glob, root)
	}
	for _, p := range m {
		rel, _ := filepath.Rel(root, p)
		if flat {
			rel = filepath.Base(p)
		}
		if err := sdcard.CopyFile(p, filepath.Join(dst, rel)); err != nil {
			return err
		}
	}
	return nil
}
