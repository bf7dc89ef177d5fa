package debpkg

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// E2fsprogsBinaries are the programs PID 1 runs to format, check and grow
// the data partition; their libraries decide which lib packages are pinned.
var E2fsprogsBinaries = []string{"sbin/mke2fs", "sbin/resize2fs", "sbin/e2fsck"}

// Resolve re-resolves every package the image needs against the current
// archive index and returns a fresh lock. It downloads e2fsprogs and the
// library packages it walks to read their ELF dependencies.
func (c *Cache) Resolve(ctx context.Context) (*Lock, error) {
	if err := c.Update(ctx, true); err != nil {
		return nil, err
	}
	l := &Lock{}
	add := func(role string, p Package) Pin {
		pin := p.Pin
		pin.Role = role
		l.Pins = append(l.Pins, pin)
		return pin
	}
	// The kernel ABI moves with security updates: follow the meta package.
	deps, err := c.Depends(ctx, "linux-image-arm64")
	if err != nil {
		return nil, err
	}
	kname := ""
	for _, d := range deps {
		if strings.HasPrefix(d, "linux-image-") && strings.HasSuffix(d, "-arm64") {
			kname = d
			break
		}
	}
	if kname == "" {
		return nil, fmt.Errorf("resolve kernel: linux-image-arm64 depends on %v, no linux-image-<abi>-arm64", deps)
	}
	for _, r := range []struct{ role, name string }{
		{RoleKernel, kname},
		{RoleFirmware, "raspi-firmware"},
		{RoleUBoot, "u-boot-rpi"},
		{RoleUBoot, "u-boot-qemu"},
	} {
		p, err := c.Show(ctx, r.name)
		if err != nil {
			return nil, err
		}
		add(r.role, p)
	}
	e2, err := c.Show(ctx, "e2fsprogs")
	if err != nil {
		return nil, err
	}
	e2pin := add(RoleE2fsprogs, e2)
	libs, err := c.resolveLibs(ctx, e2, e2pin)
	if err != nil {
		return nil, err
	}
	for _, p := range libs {
		add(RoleLib, p)
	}
	return l, nil
}

// resolveLibs maps the DT_NEEDED sonames (and loader) of the e2fsprogs
// binaries to the packages that ship them, walking the dependency graph
// breadth-first from e2fsprogs until every soname is found.
func (c *Cache) resolveLibs(ctx context.Context, e2 Package, e2pin Pin) ([]Package, error) {
	root, err := c.Unpack(ctx, e2pin)
	if err != nil {
		return nil, err
	}
	type tree struct {
		pkg Package
		dir string
	}
	var trees []tree
	want := map[string]bool{} // soname or interpreter path → found
	var queueFiles []string
	for _, b := range E2fsprogsBinaries {
		p, ok := FindFile(root, b)
		if !ok {
			return nil, fmt.Errorf("e2fsprogs %s has no %s", e2.Version, b)
		}
		queueFiles = append(queueFiles, p)
	}
	used := map[string]Package{}
	seen := map[string]bool{e2.Name: true}
	frontier := append([]string(nil), e2.Depends...)
	for {
		// Scan new ELF files for what they need.
		for len(queueFiles) > 0 {
			f := queueFiles[0]
			queueFiles = queueFiles[1:]
			needed, interp, err := ELFDeps(f)
			if err != nil {
				return nil, err
			}
			if interp != "" {
				needed = append(needed, interp)
			}
			for _, n := range needed {
				if _, ok := want[n]; !ok {
					want[n] = false
				}
			}
		}
		// Try to satisfy what is missing from the trees we have.
		missing := 0
		for name, found := range want {
			if found {
				continue
			}
			for _, t := range trees {
				var p string
				var ok bool
				if filepath.IsAbs(name) {
					p, ok = FindFile(t.dir, name)
				} else {
					p, ok = FindLib([]string{t.dir}, name)
				}
				if ok {
					want[name] = true
					used[t.pkg.Name] = t.pkg
					queueFiles = append(queueFiles, p)
					break
				}
			}
			if !want[name] {
				missing++
			}
		}
		if len(queueFiles) > 0 {
			continue
		}
		if missing == 0 {
			break
		}
		// Widen the search by one level of dependencies.
		if len(frontier) == 0 {
			var names []string
			for n, ok := range want {
				if !ok {
					names = append(names, n)
				}
			}
			sort.Strings(names)
			return nil, fmt.Errorf("e2fsprogs libraries not found in its dependencies: %s", strings.Join(names, " "))
		}
		var next []string
		for _, name := range frontier {
			if seen[name] {
				continue
			}
			seen[name] = true
			p, err := c.Show(ctx, name)
			if err != nil {
				// Virtual or foreign packages are not library carriers here.
				c.Log.Debug("skip dependency", "name", name, "err", err)
				continue
			}
			dir, err := c.Unpack(ctx, Pin{Role: RoleLib, Name: p.Name, Version: p.Version, SHA256: p.SHA256, Size: p.Size, Filename: p.Filename})
			if err != nil {
				return nil, err
			}
			trees = append(trees, tree{p, dir})
			next = append(next, p.Depends...)
		}
		frontier = next
	}
	var out []Package
	for _, p := range used {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Drift is a pin whose package the archive now offers in another version.
type Drift struct {
	Pin       Pin
	Candidate Package
}

// Check compares every pin with the archive's current candidate. The kernel
// is checked through linux-image-arm64, since a new ABI is a new package name.
func (c *Cache) Check(ctx context.Context, l *Lock) ([]Drift, error) {
	if err := c.Update(ctx, true); err != nil {
		return nil, err
	}
	var out []Drift
	for _, p := range l.Pins {
		name := p.Name
		if p.Role == RoleKernel {
			deps, err := c.Depends(ctx, "linux-image-arm64")
			if err != nil {
				return nil, err
			}
			for _, d := range deps {
				if strings.HasPrefix(d, "linux-image-") && strings.HasSuffix(d, "-arm64") {
					name = d
					break
				}
			}
		}
		cand, err := c.Show(ctx, name)
		if err != nil {
			return nil, err
		}
		if cand.Name != p.Name || cand.Version != p.Version || cand.SHA256 != p.SHA256 {
			out = append(out, Drift{Pin: p, Candidate: cand})
		}
	}
	return out, nil
}
