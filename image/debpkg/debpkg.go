// Package debpkg resolves, downloads, verifies and unpacks Debian bookworm
// arm64 packages on any host, with an apt state of its own under the build
// directory so the host's apt configuration is neither read nor changed.
//
// Every package the image uses is pinned in a lock file (name, version,
// sha256, pool filename, size); a cached .deb whose sha256 does not match
// its pin is never used.
package debpkg

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Arch is the Debian architecture of every package the image uses.
const Arch = "arm64"

// Sources are the bookworm suites the image draws from. The kernel ABI moves
// with security updates, so bookworm-security is part of resolution.
var Sources = []string{
	"deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main non-free-firmware",
	"deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main non-free-firmware",
	"deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main non-free-firmware",
}

// Package is what the archive index says about one package version.
type Package struct {
	Pin
	Depends    []string // package names from Depends and Pre-Depends, alternatives flattened
	Provides   []string
	Essential  bool
	SourceName string
}

// Cache is the package cache: build/debian holds the .deb files, apt/ the
// private apt state, root/ the unpacked trees (one per pinned file).
type Cache struct {
	Dir      string
	Log      *slog.Logger
	Progress io.Writer // download progress lines; nil: none

	mu       sync.Mutex
	updated  bool
	aptReady bool
}

// NewCache returns a cache rooted at dir (usually <repo>/build/debian).
func NewCache(dir string, log *slog.Logger, progress io.Writer) *Cache {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Cache{Dir: dir, Log: log, Progress: progress}
}

func (c *Cache) aptDir() string { return filepath.Join(c.Dir, "apt") }

// aptOptions points apt at a private state: arm64 only, our sources list,
// our lists and cache, an empty dpkg status, no locks on the host's apt.
func (c *Cache) aptOptions() []string {
	a := c.aptDir()
	return []string{
		"-oAPT::Architecture=" + Arch,
		"-oAPT::Architectures=" + Arch,
		"-oDir::State::Lists=" + filepath.Join(a, "lists"),
		"-oDir::State::Status=" + filepath.Join(a, "status"),
		"-oDir::Etc::SourceList=" + filepath.Join(a, "sources.list"),
		"-oDir::Etc::SourceParts=/nonexistent",
		"-oDir::Etc::Preferences=/nonexistent",
		"-oDir::Etc::PreferencesParts=/nonexistent",
		"-oDir::Cache=" + filepath.Join(a, "cache"),
		"-oDebug::NoLocking=1",
		"-oAPT::Sandbox::User=root",
		"-oAcquire::Languages=none",
	}
}

func (c *Cache) prepareApt() error {
	if c.aptReady {
		return nil
	}
	a := c.aptDir()
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a, d), 0o755); err != nil {
			return fmt.Errorf("apt state %s: %w", a, err)
		}
	}
	if err := os.WriteFile(filepath.Join(a, "sources.list"), []byte(strings.Join(Sources, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("apt sources: %w", err)
	}
	st := filepath.Join(a, "status")
	if _, err := os.Stat(st); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(st, nil, 0o644); err != nil {
			return fmt.Errorf("apt status: %w", err)
		}
	}
	c.aptReady = true
	return nil
}

func (c *Cache) run(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%s not found (install it: make deps): %w", name, err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args[len(args)-min(len(args), 2):], " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Update refreshes the package index (once per Cache, or when forced).
func (c *Cache) Update(ctx context.Context, force bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.updateLocked(ctx, force)
}

func (c *Cache) updateLocked(ctx context.Context, force bool) error {
	if err := c.prepareApt(); err != nil {
		return err
	}
	if c.updated && !force {
		return nil
	}
	if !force {
		// Lists younger than a day are good enough to download pinned versions.
		if fi, err := os.Stat(filepath.Join(c.aptDir(), "lists", "lock")); err == nil && time.Since(fi.ModTime()) < 24*time.Hour && c.haveLists() {
			c.updated = true
			return nil
		}
	}
	c.progressf("debian: updating package index (bookworm, bookworm-updates, bookworm-security; arm64)\n")
	args := append(c.aptOptions(), "-q", "update")
	if _, err := c.run(ctx, "", "apt-get", args...); err != nil {
		return fmt.Errorf("apt index update: %w", err)
	}
	_ = os.WriteFile(filepath.Join(c.aptDir(), "lists", "lock"), nil, 0o644)
	os.Chtimes(filepath.Join(c.aptDir(), "lists", "lock"), time.Now(), time.Now())
	c.updated = true
	return nil
}

func (c *Cache) haveLists() bool {
	m, _ := filepath.Glob(filepath.Join(c.aptDir(), "lists", "*_Packages*"))
	return len(m) > 0
}

func (c *Cache) progressf(format string, a ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format, a...)
	}
}

// Show returns the candidate version (the newest in the configured suites)
// of a package as the index describes it.
func (c *Cache) Show(ctx context.Context, name string) (Package, error) {
	if err := c.Update(ctx, false); err != nil {
		return Package{}, err
	}
	args := append(c.aptOptions(), "show", "--no-all-versions", name)
	out, err := c.run(ctx, "", "apt-cache", args...)
	if err != nil {
		return Package{}, fmt.Errorf("resolve %s: %w", name, err)
	}
	pkgs := parseControl(string(out))
	if len(pkgs) == 0 {
		return Package{}, fmt.Errorf("resolve %s: not in bookworm arm64", name)
	}
	return pkgs[0], nil
}

// Depends returns the direct dependencies of name's candidate, as
// `apt-cache depends` prints them (virtual packages resolved by apt).
func (c *Cache) Depends(ctx context.Context, name string) ([]string, error) {
	if err := c.Update(ctx, false); err != nil {
		return nil, err
	}
	args := append(c.aptOptions(), "depends", name)
	out, err := c.run(ctx, "", "apt-cache", args...)
	if err != nil {
		return nil, fmt.Errorf("depends %s: %w", name, err)
	}
	var deps []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "|"))
		for _, p := range []string{"Depends:", "PreDepends:"} {
			if strings.HasPrefix(line, p) {
				d := strings.TrimSpace(strings.TrimPrefix(line, p))
				d = strings.Trim(d, "<>")
				deps = append(deps, d)
			}
		}
	}
	return deps, nil
}

// parseControl reads RFC 822 style stanzas as apt-cache show prints them.
func parseControl(text string) []Package {
	var out []Package
	var cur Package
	var have bool
	flush := func() {
		if have && cur.Name != "" {
			out = append(out, cur)
		}
		cur, have = Package{}, false
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		have = true
		switch k {
		case "Package":
			cur.Name = v
		case "Version":
			cur.Version = v
		case "Filename":
			cur.Filename = v
		case "SHA256":
			cur.SHA256 = v
		case "Size":
			fmt.Sscan(v, &cur.Size)
		case "Source":
			cur.SourceName = strings.Fields(v)[0]
		case "Essential":
			cur.Essential = v == "yes"
		case "Depends", "Pre-Depends":
			cur.Depends = append(cur.Depends, depNames(v)...)
		case "Provides":
			cur.Provides = append(cur.Provides, depNames(v)...)
		}
	}
	flush()
	return out
}

// depNames flattens "a (>= 1) | b, c:any" into [a b c].
func depNames(field string) []string {
	var names []string
	for _, group := range strings.Split(field, ",") {
		for _, alt := range strings.Split(group, "|") {
			f := strings.Fields(alt)
			if len(f) == 0 {
				continue
			}
			n, _, _ := strings.Cut(f[0], ":")
			names = append(names, n)
		}
	}
	return names
}

// Path is where a pinned package's .deb lives in the cache.
func (c *Cache) Path(p Pin) string { return filepath.Join(c.Dir, filepath.Base(p.Filename)) }

// Fetch makes sure the pinned .deb is in the cache with the pinned sha256,
// downloading it with apt when it is missing or damaged, and returns its path.
func (c *Cache) Fetch(ctx context.Context, p Pin) (string, error) {
	if err := p.valid(); err != nil {
		return "", err
	}
	path := c.Path(p)
	if err := verify(path, p.SHA256); err == nil {
		return path, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		c.Log.Warn("cached package damaged, downloading again", "file", path, "err", err)
		os.Remove(path)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.updateLocked(ctx, false); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(c.Dir, ".download-")
	if err != nil {
		return "", fmt.Errorf("download %s: %w", p.Name, err)
	}
	defer os.RemoveAll(tmp)
	done := make(chan struct{})
	go c.watchDownload(tmp, p, done)
	args := append(c.aptOptions(), "-q", "download", p.Name+"="+p.Version)
	_, err = c.run(ctx, tmp, "apt-get", args...)
	close(done)
	if err != nil {
		return "", fmt.Errorf("download %s %s (if the archive dropped this version, run `snodectl image lock --refresh`): %w", p.Name, p.Version, err)
	}
	got := filepath.Join(tmp, filepath.Base(p.Filename))
	if _, err := os.Stat(got); err != nil {
		// apt names files by its own escaping; take the only .deb there.
		m, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
		if len(m) != 1 {
			return "", fmt.Errorf("download %s: apt left %d files", p.Name, len(m))
		}
		got = m[0]
	}
	if err := verify(got, p.SHA256); err != nil {
		return "", fmt.Errorf("download %s %s: %w", p.Name, p.Version, err)
	}
	if err := os.Rename(got, path); err != nil {
		return "", fmt.Errorf("download %s: %w", p.Name, err)
	}
	c.progressf("debian: %s %s: %d bytes (100%%) sha256 ok\n", p.Name, p.Version, p.Size)
	return path, nil
}

// watchDownload reports bytes and percent of a running apt download by
// watching the files apt writes into its working directory.
func (c *Cache) watchDownload(dir string, p Pin, done <-chan struct{}) {
	if c.Progress == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := int64(-1)
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		var n int64
		filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				n += fi.Size()
			}
			return nil
		})
		if n == last {
			continue
		}
		last = n
		pct := 0.0
		if p.Size > 0 {
			pct = 100 * float64(n) / float64(p.Size)
		}
		c.progressf("debian: %s: %.1f / %.1f MB (%.0f%%)\n", p.Name, float64(n)/1e6, float64(p.Size)/1e6, pct)
	}
}

func verify(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s: sha256 %s, pinned %s", path, got, want)
	}
	return nil
}

// Unpack extracts a pinned package (fetching it first) into the cache's
// root/<file> directory once, and returns that directory.
func (c *Cache) Unpack(ctx context.Context, p Pin) (string, error) {
	deb, err := c.Fetch(ctx, p)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(c.Dir, "root", strings.TrimSuffix(filepath.Base(p.Filename), ".deb"))
	stamp := filepath.Join(dir, ".snodebox-sha256")
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == p.SHA256 {
		return dir, nil
	}
	os.RemoveAll(dir)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("unpack %s: %w", p.Name, err)
	}
	c.progressf("debian: unpacking %s\n", filepath.Base(deb))
	if _, err := c.run(ctx, "", "dpkg-deb", "-x", deb, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("unpack %s: %w", p.Name, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".snodebox-sha256"), []byte(p.SHA256+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("unpack %s: %w", p.Name, err)
	}
	return dir, nil
}
