package slot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Manifest describes what a slot holds: manifest.json at its root.
type Manifest struct {
	Version string `json:"version"`
	Board   string `json:"board"`
	Kernel  string `json:"kernel"` // kernel release, e.g. 6.1.0-56-arm64
	// BuildID is the SHA-256 of the sorted file list (names, sizes and
	// hashes): two slots with the same files have the same id, so snoded can
	// tell a committed slot from one rewritten since.
	BuildID string `json:"build_id"`
	Files   []File `json:"files"`
}

// File is one file of a slot.
type File struct {
	Name   string `json:"name"` // slash-separated, relative to the slot root
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// HashFile returns the size and hex SHA-256 of a file.
func HashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("hash %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// NewManifest hashes every regular file under dir (except a manifest
// already there) into a manifest.
func NewManifest(dir, version, board, kernel string) (Manifest, error) {
	m := Manifest{Version: version, Board: board, Kernel: kernel}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == ManifestFile || strings.HasPrefix(rel, "lost+found/") {
			return nil
		}
		n, sum, err := HashFile(p)
		if err != nil {
			return err
		}
		m.Files = append(m.Files, File{Name: rel, Size: n, SHA256: sum})
		return nil
	})
	if err != nil {
		return m, fmt.Errorf("slot manifest of %s: %w", dir, err)
	}
	m.BuildID = m.computeID()
	return m, nil
}

func (m Manifest) computeID() string {
	files := append([]File(nil), m.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00%s\n", f.Name, f.Size, f.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Marshal is the manifest as written into a slot.
func (m Manifest) Marshal() []byte {
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// ParseManifest reads manifest.json and checks its build id.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("slot manifest: %w", err)
	}
	if m.Version == "" || len(m.Files) == 0 {
		return m, errors.New("slot manifest: no version or no files")
	}
	if id := m.computeID(); id != m.BuildID {
		return m, fmt.Errorf("slot manifest: build id %s does not match its files (%s)", m.BuildID, id)
	}
	return m, nil
}

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return Manifest{}, err
	}
	return ParseManifest(data)
}

// Verify checks every file the manifest lists against dir.
func (m Manifest) Verify(dir string) error {
	var errs []error
	for _, f := range m.Files {
		n, sum, err := HashFile(filepath.Join(dir, filepath.FromSlash(f.Name)))
		switch {
		case err != nil:
			errs = append(errs, err)
		case n != f.Size || sum != f.SHA256:
			errs = append(errs, fmt.Errorf("%s: %d bytes sha256 %s, manifest says %d bytes %s", f.Name, n, sum, f.Size, f.SHA256))
		}
	}
	return errors.Join(errs...)
}
