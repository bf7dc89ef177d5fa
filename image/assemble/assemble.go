package assemble

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/snodebox/snodebox/image/debpkg"
	"github.com/snodebox/snodebox/image/initramfs"
	"github.com/snodebox/snodebox/image/modules"
	"github.com/snodebox/snodebox/image/sdcard"
)

// Builder assembles boot artifacts from the pinned packages.
type Builder struct {
	Paths    Paths
	Cache    *debpkg.Cache
	Log      *slog.Logger
	Progress io.Writer
	// Version is stamped into snoded and image.json; default: git describe.
	Version string
}

// New returns a builder for a repository.
func New(repo string, log *slog.Logger, progress io.Writer) *Builder {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p := Paths{Repo: repo}
	return &Builder{Paths: p, Cache: debpkg.NewCache(p.Debian(), log, progress), Log: log, Progress: progress}
}

func (b *Builder) progressf(format string, a ...any) {
	if b.Progress != nil {
		fmt.Fprintf(b.Progress, format, a...)
	}
}

// Lock reads image/debian.lock.
func (b *Builder) Lock() (*debpkg.Lock, error) {
	return debpkg.ReadLock(b.Paths.Lock())
}

// KernelBoards are the boards the image targets (names as in package board,
// with qemu-arm64 for QEMU's virt machine).
var KernelBoards = map[string]string{
	"qemu-arm64": "",
	"rpi3":       "broadcom/bcm2837-rpi-3-b.dtb",
	"rpi4":       "broadcom/bcm2711-rpi-4-b.dtb",
}

// BoardDTB returns the DTB path (inside the kernel package's
// usr/lib/linux-image-<kver>/) for a board, "" when the machine makes its own.
func BoardDTB(board string) (string, error) {
	d, ok := KernelBoards[board]
	if !ok {
		return "", fmt.Errorf("unknown board %q (qemu-arm64, rpi3, rpi4)", board)
	}
	return d, nil
}

// KernelTree unpacks the pinned kernel package and indexes its modules.
func (b *Builder) KernelTree(ctx context.Context) (*modules.Tree, debpkg.Pin, error) {
	l, err := b.Lock()
	if err != nil {
		return nil, debpkg.Pin{}, err
	}
	kp, err := l.Kernel()
	if err != nil {
		return nil, kp, err
	}
	root, err := b.Cache.Unpack(ctx, kp)
	if err != nil {
		return nil, kp, err
	}
	t, err := modules.Open(root)
	if err != nil {
		return nil, kp, err
	}
	return t, kp, nil
}

// Kernel writes the board's kernel Image to out and, when dtbOut is set,
// its device tree. It returns the kernel release.
func (b *Builder) Kernel(ctx context.Context, board, out, dtbOut string) (string, error) {
	dtb, err := BoardDTB(board)
	if err != nil {
		return "", err
	}
	t, _, err := b.KernelTree(ctx)
	if err != nil {
		return "", err
	}
	img := filepath.Join(t.Root, "boot", "vmlinuz-"+t.KVer)
	if err := sdcard.CopyFile(img, out); err != nil {
		return "", fmt.Errorf("kernel image: %w", err)
	}
	if dtbOut != "" {
		if dtb == "" {
			return "", fmt.Errorf("board %s: QEMU's virt machine generates its device tree; no --dtb-out", board)
		}
		src := filepath.Join(t.Root, "usr", "lib", "linux-image-"+t.KVer, dtb)
		if err := sdcard.CopyFile(src, dtbOut); err != nil {
			return "", fmt.Errorf("device tree: %w", err)
		}
	}
	return t.KVer, nil
}

// version is git describe of the repository, or "dev".
func (b *Builder) version() string {
	if b.Version != "" {
		return b.Version
	}
	out, err := exec.Command("git", "-C", b.Paths.Repo, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "dev"
	}
	return strings.TrimSpace(string(out))
}

// Snoded builds the static arm64 snoded into build/image/snoded-arm64.
func (b *Builder) Snoded(ctx context.Context) (string, error) {
	out := b.Paths.Out("snoded-arm64")
	if err := mkdirFor(out); err != nil {
		return "", err
	}
	gobin, err := goTool()
	if err != nil {
		return "", err
	}
	b.progressf("image: building snoded for linux/arm64\n")
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/snodebox/snodebox/appliance/node.Version="+b.version(),
		"-o", out, "./cmd/snoded")
	cmd.Dir = b.Paths.Repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if o, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build snoded (linux/arm64): %w\n%s", err, o)
	}
	return out, nil
}

// goTool finds the go command: PATH first, then the toolchain this binary
// was built with (tests run from `go test`), then /usr/local/go.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	for _, p := range []string{filepath.Join(runtime.GOROOT(), "bin", "go"), "/usr/local/go/bin/go"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("build snoded: no go command in PATH or /usr/local/go/bin")
}

// InitramfsStats describes a written initramfs.
type InitramfsStats struct {
	Kernel    string
	Modules   int
	Files     int
	RawBytes  int64
	GzipBytes int64
	Closure   modules.Closure
	Snoded    string
}

// ImageInfo is /etc/snodebox/image.json.
type ImageInfo struct {
	Version string `json:"version"`
	Board   string `json:"board"`
	Kernel  string `json:"kernel"`
}

// Initramfs writes the board's initramfs to out. snoded is a prebuilt
// static arm64 binary, or "" to build one.
func (b *Builder) Initramfs(ctx context.Context, board, snoded, out string) (InitramfsStats, error) {
	var st InitramfsStats
	roots, err := modules.Roots(board)
	if err != nil {
		return st, err
	}
	t, _, err := b.KernelTree(ctx)
	if err != nil {
		return st, err
	}
	cl, err := t.Closure(roots)
	if err != nil {
		return st, fmt.Errorf("board %s: %w", board, err)
	}
	if len(cl.Absent) > 0 {
		b.Log.Info("optional modules this kernel lacks", "board", board, "kernel", t.KVer, "modules", strings.Join(cl.Absent, " "))
	}
	if len(cl.Builtin) > 0 {
		b.Log.Debug("modules built into the kernel", "modules", strings.Join(cl.Builtin, " "))
	}
	if snoded == "" {
		if snoded, err = b.Snoded(ctx); err != nil {
			return st, err
		}
	}
	a := initramfs.New()
	initBin, err := os.ReadFile(snoded)
	if err != nil {
		return st, fmt.Errorf("snoded: %w", err)
	}
	if _, _, err := elfArm64Static(snoded); err != nil {
		return st, err
	}
	must := func(err error) {
		if err != nil && st.Kernel == "" {
			st.Kernel = "error: " + err.Error()
		}
	}
	must(a.File("init", initBin, 0o755))
	must(a.Dir("dev", 0o755))
	must(a.CharDev("dev/console", 0o600, 5, 1))
	must(a.CharDev("dev/null", 0o666, 1, 3))
	for _, d := range []string{"proc", "sys", "tmp", "run", "data", "etc/snodebox"} {
		must(a.Dir(d, 0o755))
	}
	// Modules, uncompressed, and the indexes of a depmod over just them.
	stage, err := os.MkdirTemp(b.Paths.Build(), ".modstage-")
	if err != nil {
		return st, err
	}
	defer os.RemoveAll(stage)
	kdir := filepath.Join("lib", "modules", t.KVer)
	for _, m := range cl.Modules {
		data, err := t.ReadUncompressed(m.Path)
		if err != nil {
			return st, err
		}
		rel := modules.UncompressedPath(m.Path)
		must(a.File(filepath.Join(kdir, rel), data, 0o644))
		p := filepath.Join(stage, kdir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return st, err
		}
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		if data, err := os.ReadFile(filepath.Join(t.Dir(), f)); err == nil {
			os.WriteFile(filepath.Join(stage, kdir, f), data, 0o644)
			if f == "modules.builtin" {
				must(a.File(filepath.Join(kdir, f), data, 0o644))
			}
		}
	}
	if err := modules.Depmod(stage, t.KVer); err != nil {
		return st, err
	}
	for _, f := range []string{"modules.dep", "modules.alias", "modules.softdep", "modules.symbols", "modules.devname"} {
		data, err := os.ReadFile(filepath.Join(stage, kdir, f))
		if err != nil {
			if f == "modules.dep" {
				return st, fmt.Errorf("depmod of the closure: %w", err)
			}
			continue
		}
		must(a.File(filepath.Join(kdir, f), data, 0o644))
	}
	must(a.File("etc/snodebox/modules.load", []byte(cl.LoadList()), 0o644))
	info, _ := json.MarshalIndent(ImageInfo{Version: b.version(), Board: board, Kernel: t.KVer}, "", "  ")
	must(a.File("etc/snodebox/image.json", append(info, '\n'), 0o644))
	if err := b.addE2fsprogs(ctx, a); err != nil {
		return st, err
	}
	if strings.HasPrefix(st.Kernel, "error: ") {
		return st, fmt.Errorf("initramfs: %s", strings.TrimPrefix(st.Kernel, "error: "))
	}
	if err := mkdirFor(out); err != nil {
		return st, err
	}
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return st, err
	}
	raw, gz, err := a.WriteGzip(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out + ".tmp")
		return st, err
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return st, err
	}
	st = InitramfsStats{Kernel: t.KVer, Modules: len(cl.Modules), Files: a.Len(), RawBytes: raw, GzipBytes: gz, Closure: cl, Snoded: snoded}
	b.progressf("image: %s: %s, %d modules, %.1f MB raw, %.1f MB gzip\n", out, board, len(cl.Modules), float64(raw)/1e6, float64(gz)/1e6)
	return st, nil
}

// addE2fsprogs puts mke2fs, resize2fs and e2fsck with every library they
// load (found by their ELF DT_NEEDED, from the pinned lib packages) and the
// loader into the archive, so PID 1 can format and grow the data partition.
func (b *Builder) addE2fsprogs(ctx context.Context, a *initramfs.Archive) error {
	l, err := b.Lock()
	if err != nil {
		return err
	}
	e2 := l.ByRole(debpkg.RoleE2fsprogs)
	if len(e2) != 1 {
		return fmt.Errorf("lock: want one %s pin", debpkg.RoleE2fsprogs)
	}
	e2root, err := b.Cache.Unpack(ctx, e2[0])
	if err != nil {
		return err
	}
	var trees []string
	for _, p := range l.ByRole(debpkg.RoleLib) {
		dir, err := b.Cache.Unpack(ctx, p)
		if err != nil {
			return err
		}
		trees = append(trees, dir)
	}
	trees = append(trees, e2root)
	queue := []string{}
	for _, bin := range debpkg.E2fsprogsBinaries {
		p, ok := debpkg.FindFile(e2root, bin)
		if !ok {
			return fmt.Errorf("e2fsprogs: no %s", bin)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := a.File(bin, data, 0o755); err != nil {
			return err
		}
		queue = append(queue, p)
	}
	if p, ok := debpkg.FindFile(e2root, "etc/mke2fs.conf"); ok {
		if data, err := os.ReadFile(p); err == nil {
			a.File("etc/mke2fs.conf", data, 0o644)
		}
	}
	seen := map[string]bool{}
	var missing []string
	loader := ""
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		needed, interp, err := debpkg.ELFDeps(f)
		if err != nil {
			return err
		}
		if interp != "" && !seen[interp] {
			seen[interp] = true
			loader = interp
			found := false
			for _, t := range trees {
				if p, ok := debpkg.FindFile(t, interp); ok {
					data, err := os.ReadFile(p)
					if err != nil {
						return err
					}
					if err := a.File(interp, data, 0o755); err != nil {
						return err
					}
					found = true
					break
				}
			}
			if !found {
				missing = append(missing, interp)
			}
		}
		for _, so := range needed {
			if seen[so] {
				continue
			}
			seen[so] = true
			p, ok := debpkg.FindLib(trees, so)
			if !ok {
				missing = append(missing, so)
				continue
			}
			dst := filepath.Join("lib/aarch64-linux-gnu", so)
			if loader != "" && so == filepath.Base(loader) {
				// libc names the loader too: one copy, linked.
				if err := a.Symlink(dst, loader); err != nil {
					return err
				}
				continue
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := a.File(dst, data, 0o755); err != nil {
				return err
			}
			queue = append(queue, p)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("e2fsprogs needs %s, not in the pinned lib packages (run `snodectl image lock --refresh`)", strings.Join(missing, ", "))
	}
	return nil
}
