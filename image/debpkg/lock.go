package debpkg

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Roles say what a pinned package is for.
const (
	RoleKernel    = "kernel"    // linux-image-<abi>-arm64: Image, DTBs, modules
	RoleFirmware  = "firmware"  // raspi-firmware: Pi boot files
	RoleUBoot     = "u-boot"    // u-boot-rpi, u-boot-qemu
	RoleE2fsprogs = "e2fsprogs" // mke2fs, resize2fs, e2fsck
	RoleLib       = "lib"       // shared libraries the e2fsprogs binaries load
)

// Pin fixes one package file: the lock file holds one per line.
type Pin struct {
	Role     string
	Name     string
	Version  string
	SHA256   string
	Size     int64
	Filename string // pool path in the archive
}

func (p Pin) valid() error {
	if p.Name == "" || p.Version == "" || len(p.SHA256) != 64 || p.Filename == "" {
		return fmt.Errorf("pin %q: incomplete (name, version, sha256, filename are required)", p.Name)
	}
	return nil
}

// Lock is the checked-in pin list, image/debian.lock.
type Lock struct {
	Pins []Pin
}

const lockHeader = `# snodebox image/debian.lock: the Debian bookworm arm64 packages images are
# built from, pinned by version and sha256. Regenerate with
#   snodectl image lock --refresh
# role name version sha256 size filename
`

// ReadLock parses a lock file.
func ReadLock(path string) (*Lock, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read lock: %w", err)
	}
	return ParseLock(b)
}

// ParseLock parses lock file text.
func ParseLock(b []byte) (*Lock, error) {
	l := &Lock{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 6 {
			return nil, fmt.Errorf("lock line %d: want 6 fields (role name version sha256 size filename), got %d", n, len(f))
		}
		size, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("lock line %d: size %q: %w", n, f[4], err)
		}
		p := Pin{Role: f[0], Name: f[1], Version: f[2], SHA256: f[3], Size: size, Filename: f[5]}
		if err := p.valid(); err != nil {
			return nil, fmt.Errorf("lock line %d: %w", n, err)
		}
		l.Pins = append(l.Pins, p)
	}
	return l, sc.Err()
}

// Bytes renders the lock deterministically (by role, then name).
func (l *Lock) Bytes() []byte {
	pins := append([]Pin(nil), l.Pins...)
	order := map[string]int{RoleKernel: 0, RoleFirmware: 1, RoleUBoot: 2, RoleE2fsprogs: 3, RoleLib: 4}
	sort.SliceStable(pins, func(i, j int) bool {
		if order[pins[i].Role] != order[pins[j].Role] {
			return order[pins[i].Role] < order[pins[j].Role]
		}
		return pins[i].Name < pins[j].Name
	})
	var b bytes.Buffer
	b.WriteString(lockHeader)
	for _, p := range pins {
		fmt.Fprintf(&b, "%s %s %s %s %d %s\n", p.Role, p.Name, p.Version, p.SHA256, p.Size, p.Filename)
	}
	return b.Bytes()
}

// Write stores the lock at path.
func (l *Lock) Write(path string) error {
	if err := os.WriteFile(path+".tmp", l.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write lock: %w", err)
	}
	return os.Rename(path+".tmp", path)
}

// ByRole returns the pins with the given role.
func (l *Lock) ByRole(role string) []Pin {
	var out []Pin
	for _, p := range l.Pins {
		if p.Role == role {
			out = append(out, p)
		}
	}
	return out
}

// Get returns the pin for a package name.
func (l *Lock) Get(name string) (Pin, bool) {
	for _, p := range l.Pins {
		if p.Name == name {
			return p, true
		}
	}
	return Pin{}, false
}

// Kernel returns the kernel package pin.
func (l *Lock) Kernel() (Pin, error) {
	k := l.ByRole(RoleKernel)
	if len(k) != 1 {
		return Pin{}, fmt.Errorf("lock: want exactly one %s pin, have %d", RoleKernel, len(k))
	}
	return k[0], nil
}
