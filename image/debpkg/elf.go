package debpkg

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
)

// ELFDeps returns the DT_NEEDED sonames and the program interpreter of an
// ELF file: what the dynamic loader will look for when it runs.
func ELFDeps(path string) (needed []string, interp string, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("elf %s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		return nil, "", fmt.Errorf("elf %s: machine %v, want aarch64", path, f.Machine)
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return nil, "", fmt.Errorf("elf %s: DT_NEEDED: %w", path, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return nil, "", fmt.Errorf("elf %s: PT_INTERP: %w", path, err)
			}
			if n := len(b); n > 0 && b[n-1] == 0 {
				b = b[:n-1]
			}
			interp = string(b)
		}
	}
	return needed, interp, nil
}

// LibDirs are where Debian's arm64 loader finds libraries without a cache.
var LibDirs = []string{"lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib"}

// FindLib looks for a soname in unpacked package trees and returns the
// file it names (symlinks resolved inside the tree).
func FindLib(trees []string, soname string) (string, bool) {
	for _, t := range trees {
		for _, d := range LibDirs {
			p := filepath.Join(t, d, soname)
			if _, err := os.Lstat(p); err != nil {
				continue
			}
			if r, ok := resolveInTree(t, p); ok {
				return r, true
			}
		}
	}
	return "", false
}

// resolveInTree follows symlinks, treating absolute targets as relative to
// the package tree (they point into the target's root, not the host's).
func resolveInTree(tree, p string) (string, bool) {
	for i := 0; i < 16; i++ {
		fi, err := os.Lstat(p)
		if err != nil {
			return "", false
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return p, fi.Mode().IsRegular()
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", false
		}
		if filepath.IsAbs(target) {
			p = filepath.Join(tree, target)
		} else {
			p = filepath.Join(filepath.Dir(p), target)
		}
	}
	return "", false
}

// FindFile resolves a path inside a package tree the way the target would.
func FindFile(tree, rel string) (string, bool) {
	return resolveInTree(tree, filepath.Join(tree, rel))
}
