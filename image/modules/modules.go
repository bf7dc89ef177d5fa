// Package modules computes the kernel module closure an image loads at boot:
// an explicit root list per board, closed over modules.dep and soft
// dependencies, ordered so every module comes after what it needs.
//
// PID 1 cannot autoload (there is no /sbin/modprobe) and u-root's kmodule
// follows neither soft dependencies nor names that mix '-' and '_', so the
// order is decided here, at build time, and written to modules.load.
package modules

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Boards with a root list.
var Boards = []string{"qemu-arm64", "rpi3", "rpi4"}

// A root ending in "?" is optional: kernels that lack it (or build it in)
// still produce an image, and the report says so.
var (
	common = []string{
		// ext4 needs crc32c before it (a soft dependency through an alias).
		"crc32c_generic", "crc16", "mbcache", "jbd2", "ext4",
		// The boot partition is FAT; vfat fails with EINVAL without codepages.
		"fat", "vfat", "nls_cp437", "nls_ascii",
		"evdev", "gpio_keys",
		"sch_fq", "tcp_bbr",
	}
	ledTriggers = []string{
		"leds-gpio", "ledtrig-timer?", "ledtrig-heartbeat?", "ledtrig-default-on?",
		"ledtrig-pattern?", "ledtrig-oneshot?", "ledtrig-transient?", "ledtrig-netdev?", "ledtrig-activity?",
	}
	rootLists = map[string][]string{
		"qemu-arm64": append([]string{
			"virtio_pci", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
			"virtio_blk", "failover", "net_failover", "virtio_net",
			// The PCI watchdog QEMU adds when it boots a disk image through U-Boot.
			"i6300esb?",
		}, common...),
		"rpi3": append(append([]string{
			"bcm2835", "sdhci?", "sdhci-pltfm?", "sdhci-iproc?", "mmc_block?",
			"phy-generic", "dwc2", "usbnet", "smsc95xx", "cdc_ether",
			"bcm2835_wdt", "bcm2835-rng", "gpio-raspberrypi-exp?", "bcm2835_thermal?", "raspberrypi-cpufreq?",
		}, ledTriggers...), common...),
		"rpi4": append(append([]string{
			"sdhci", "sdhci-pltfm", "sdhci-iproc", "mmc_block?",
			"libphy", "fixed_phy", "fwnode_mdio", "of_mdio", "mdio-bcm-unimac",
			"bcm-phy-lib", "bcm-phy-ptp?", "broadcom", "genet",
			"reset-raspberrypi", "pcie-brcmstb?", "usbcore", "xhci-hcd", "xhci-pci",
			"bcm2835_wdt", "iproc-rng200", "gpio-raspberrypi-exp?", "bcm2711_thermal?", "raspberrypi-cpufreq?",
		}, ledTriggers...), common...),
	}
)

// Roots returns the explicit root list for a board.
func Roots(board string) ([]string, error) {
	r, ok := rootLists[board]
	if !ok {
		return nil, fmt.Errorf("modules: unknown board %q (have %s)", board, strings.Join(Boards, ", "))
	}
	return append([]string(nil), r...), nil
}

// Normalize folds '-' into '_' as the kernel does for module names.
func Normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Tree is an unpacked kernel package's module directory with its indexes.
type Tree struct {
	Root    string // package root holding lib/modules/<kver>
	KVer    string
	path    map[string]string   // name → path relative to lib/modules/<kver>
	deps    map[string][]string // name → direct and indirect deps (modules.dep)
	pre     map[string][]string // softdep pre:
	post    map[string][]string // softdep post:
	aliases map[string][]string // exact (non-glob) alias → names
	builtin map[string]bool
}

// Dir is lib/modules/<kver> inside the tree.
func (t *Tree) Dir() string { return filepath.Join(t.Root, "lib", "modules", t.KVer) }

// Open reads the module indexes of a kernel package tree, running the host
// depmod first when the package ships no modules.dep (Debian's does not).
func Open(root string) (*Tree, error) {
	m, _ := filepath.Glob(filepath.Join(root, "lib", "modules", "*", "kernel"))
	if len(m) != 1 {
		return nil, fmt.Errorf("modules: want one lib/modules/<kver>/kernel in %s, found %d", root, len(m))
	}
	t := &Tree{Root: root, KVer: filepath.Base(filepath.Dir(m[0]))}
	if _, err := os.Stat(filepath.Join(t.Dir(), "modules.dep")); err != nil {
		if err := Depmod(root, t.KVer); err != nil {
			return nil, err
		}
	}
	if err := t.load(); err != nil {
		return nil, err
	}
	return t, nil
}

// Depmod runs the host's depmod on a tree (it reads arm64 modules fine).
func Depmod(root, kver string) error {
	bin, err := exec.LookPath("depmod")
	if err != nil {
		for _, p := range []string{"/usr/sbin/depmod", "/sbin/depmod"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("depmod not found (install kmod: make deps): %w", err)
	}
	out, err := exec.Command(bin, "-b", root, kver).CombinedOutput()
	if err != nil {
		return fmt.Errorf("depmod -b %s %s: %w: %s", root, kver, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func modName(rel string) string {
	b := filepath.Base(rel)
	for _, suf := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(b, suf) {
			return Normalize(strings.TrimSuffix(b, suf))
		}
	}
	return Normalize(b)
}

func (t *Tree) load() error {
	t.path = map[string]string{}
	t.deps = map[string][]string{}
	t.pre = map[string][]string{}
	t.post = map[string][]string{}
	t.aliases = map[string][]string{}
	t.builtin = map[string]bool{}
	err := eachLine(filepath.Join(t.Dir(), "modules.dep"), true, func(line string) {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			return
		}
		name := modName(mod)
		t.path[name] = mod
		for _, d := range strings.Fields(deps) {
			t.deps[name] = append(t.deps[name], modName(d))
		}
	})
	if err != nil {
		return err
	}
	eachLine(filepath.Join(t.Dir(), "modules.softdep"), false, func(line string) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "softdep" {
			return
		}
		name := Normalize(f[1])
		var dst map[string][]string
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				dst = t.pre
			case "post:":
				dst = t.post
			default:
				if dst != nil {
					dst[name] = append(dst[name], w)
				}
			}
		}
	})
	eachLine(filepath.Join(t.Dir(), "modules.alias"), false, func(line string) {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" || strings.ContainsAny(f[1], "*?[") {
			return
		}
		t.aliases[f[1]] = append(t.aliases[f[1]], Normalize(f[2]))
	})
	eachLine(filepath.Join(t.Dir(), "modules.builtin"), false, func(line string) {
		t.builtin[modName(line)] = true
	})
	return nil
}

func eachLine(path string, required bool, fn func(string)) error {
	f, err := os.Open(path)
	if err != nil {
		if !required && os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("modules: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			fn(l)
		}
	}
	return sc.Err()
}

// Module is one entry of the load order.
type Module struct {
	Name string
	Path string // relative to lib/modules/<kver>, as the package ships it
}

// Closure is a board's ordered module set.
type Closure struct {
	KVer    string
	Modules []Module
	Builtin []string // roots the kernel has built in: nothing to load
	Absent  []string // optional roots this kernel does not have
}

// Closure orders roots and everything they need: for each module its soft
// "pre" dependencies, then its modules.dep dependencies, then itself, then
// its soft "post" dependencies. Required roots that are neither modules nor
// built in are an error naming each of them.
func (t *Tree) Closure(roots []string) (Closure, error) {
	c := Closure{KVer: t.KVer}
	done := map[string]bool{}
	active := map[string]bool{}
	var missing []string
	var visit func(name string, soft bool) error
	visit = func(name string, soft bool) error {
		name = Normalize(name)
		if done[name] || active[name] {
			return nil
		}
		if _, ok := t.path[name]; !ok {
			if t.builtin[name] {
				return nil
			}
			// Soft dependencies often name an alias (ext4: "pre: crc32c").
			if targets, ok := t.aliases[name]; ok && soft {
				for _, tg := range targets {
					if err := visit(tg, true); err != nil {
						return err
					}
				}
				return nil
			}
			if soft {
				return nil // modprobe ignores soft deps it cannot find, too
			}
			return fmt.Errorf("module %s: not in modules.dep", name)
		}
		active[name] = true
		for _, p := range t.pre[name] {
			if err := visit(p, true); err != nil {
				return err
			}
		}
		// modules.dep lists every (transitive) dependency; visiting each
		// orders them among themselves.
		for _, d := range t.deps[name] {
			if err := visit(d, false); err != nil {
				return err
			}
		}
		active[name] = false
		done[name] = true
		c.Modules = append(c.Modules, Module{Name: name, Path: t.path[name]})
		for _, p := range t.post[name] {
			if err := visit(p, true); err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range roots {
		optional := strings.HasSuffix(r, "?")
		name := Normalize(strings.TrimSuffix(r, "?"))
		if _, ok := t.path[name]; !ok {
			switch {
			case t.builtin[name]:
				c.Builtin = append(c.Builtin, name)
			case optional:
				c.Absent = append(c.Absent, name)
			default:
				missing = append(missing, name)
			}
			continue
		}
		if err := visit(name, false); err != nil {
			return c, err
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return c, fmt.Errorf("kernel %s has neither module nor built-in for: %s", t.KVer, strings.Join(missing, ", "))
	}
	return c, nil
}

// LoadList is the text of /etc/snodebox/modules.load: one path per line,
// relative to /lib/modules/<kver>/, in load order; compressed modules are
// named by their uncompressed path because the image stores them so.
func (c Closure) LoadList() string {
	var b strings.Builder
	for _, m := range c.Modules {
		b.WriteString(UncompressedPath(m.Path))
		b.WriteByte('\n')
	}
	return b.String()
}

// UncompressedPath maps foo.ko.xz to foo.ko.
func UncompressedPath(p string) string {
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(p, ".ko"+suf) {
			return strings.TrimSuffix(p, suf)
		}
	}
	return p
}

// ReadUncompressed returns a module file's contents as plain .ko: PID 1's
// loader takes minutes on xz modules under TCG, so the cpio as a whole is
// compressed instead.
func (t *Tree) ReadUncompressed(rel string) ([]byte, error) {
	full := filepath.Join(t.Dir(), rel)
	var tool []string
	switch {
	case strings.HasSuffix(rel, ".ko.xz"):
		tool = []string{"xz", "-dc", full}
	case strings.HasSuffix(rel, ".ko.zst"):
		tool = []string{"zstd", "-dc", full}
	case strings.HasSuffix(rel, ".ko.gz"):
		tool = []string{"gzip", "-dc", full}
	default:
		b, err := os.ReadFile(full)
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", rel, err)
		}
		return b, nil
	}
	out, err := exec.Command(tool[0], tool[1:]...).Output()
	if err != nil {
		return nil, fmt.Errorf("decompress module %s with %s: %w", rel, tool[0], err)
	}
	return out, nil
}
