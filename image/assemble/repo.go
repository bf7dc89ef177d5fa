// Package assemble builds what an image or a QEMU boot needs from the pinned
// Debian packages and this repository: the kernel Image, board DTBs, the
// module closure, the arm64 snoded and the initramfs. Outputs are cached
// under the repository's build/ directory.
package assemble

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Module is the Go module path of this repository.
const Module = "github.com/snodebox/snodebox"

// FindRepo walks up from dir to the directory whose go.mod declares Module.
func FindRepo(dir string) (string, error) {
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		dir = wd
	}
	dir, _ = filepath.Abs(dir)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module "+Module+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the snodebox repository (no go.mod for " + Module + "); run from the repository or pass --repo")
		}
		dir = parent
	}
}

// Paths are the well-known locations inside a repository.
type Paths struct {
	Repo string
}

func (p Paths) Build() string  { return filepath.Join(p.Repo, "build") }
func (p Paths) Debian() string { return filepath.Join(p.Repo, "build", "debian") }
func (p Paths) Lock() string   { return filepath.Join(p.Repo, "image", "debian.lock") }
func (p Paths) Out(parts ...string) string {
	return filepath.Join(append([]string{p.Repo, "build", "image"}, parts...)...)
}

func mkdirFor(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", filepath.Dir(path), err)
	}
	return nil
}
