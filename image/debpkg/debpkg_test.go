package debpkg

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const showText = `Package: e2fsprogs
Source: e2fsprogs (1.47.0-2)
Version: 1.47.0-2+b2
Architecture: arm64
Depends: logsave
Pre-Depends: libblkid1 (>= 2.36), libc6 (>= 2.34), libcom-err2 (>= 1.43.9), libext2fs2 (= 1.47.0-2+b2), libss2 (>= 1.38), libuuid1 (>= 2.16)
Filename: pool/main/e/e2fsprogs/e2fsprogs_1.47.0-2+b2_arm64.deb
Size: 544188
SHA256: 9842c31d32c897e3414168c4fab34cddd1633adacbc7858896e7a797d1be1b24
Description: ext2/ext3/ext4 file system utilities
 e2fsprogs contains the standard utilities

`

func TestParseControlReadsPinAndDependencies(t *testing.T) {
	ps := parseControl(showText)
	if len(ps) != 1 {
		t.Fatalf("%d stanzas, want 1", len(ps))
	}
	p := ps[0]
	if p.Name != "e2fsprogs" || p.Version != "1.47.0-2+b2" || p.Size != 544188 || p.SourceName != "e2fsprogs" ||
		p.SHA256 != "9842c31d32c897e3414168c4fab34cddd1633adacbc7858896e7a797d1be1b24" ||
		p.Filename != "pool/main/e/e2fsprogs/e2fsprogs_1.47.0-2+b2_arm64.deb" {
		t.Errorf("parsed %+v", p)
	}
	want := []string{"logsave", "libblkid1", "libc6", "libcom-err2", "libext2fs2", "libss2", "libuuid1"}
	if !slices.Equal(p.Depends, want) {
		t.Errorf("depends %v, want %v", p.Depends, want)
	}
	if got := depNames("a (>= 1) | b, c:any"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("depNames %v", got)
	}
}

func TestLockRoundTripsAndRejectsBadLines(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	l := &Lock{Pins: []Pin{
		{Role: RoleLib, Name: "libc6", Version: "2.36-9+deb12u14", SHA256: sum, Size: 10, Filename: "pool/main/g/glibc/libc6_2.36-9+deb12u14_arm64.deb"},
		{Role: RoleKernel, Name: "linux-image-6.1.0-56-arm64", Version: "6.1.192-2", SHA256: sum, Size: 20, Filename: "pool/k.deb"},
	}}
	back, err := ParseLock(l.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if back.Pins[0].Role != RoleKernel || len(back.Pins) != 2 {
		t.Errorf("kernel not first: %+v", back.Pins)
	}
	k, err := back.Kernel()
	if err != nil || k.Name != "linux-image-6.1.0-56-arm64" {
		t.Errorf("Kernel() = %+v, %v", k, err)
	}
	if _, ok := back.Get("libc6"); !ok {
		t.Error("Get(libc6) missing")
	}
	for _, bad := range []string{
		"kernel linux 1 " + sum + " 10\n",             // 5 fields
		"kernel linux 1 deadbeef 10 pool/x.deb\n",     // short sha256
		"kernel linux 1 " + sum + " ten pool/x.deb\n", // size
	} {
		if _, err := ParseLock([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// The checked-in lock must parse and pin what the image needs.
func TestCheckedInLockPinsEveryRole(t *testing.T) {
	l, err := ReadLock(filepath.Join("..", "debian.lock"))
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{RoleKernel, RoleFirmware, RoleUBoot, RoleE2fsprogs, RoleLib} {
		if len(l.ByRole(role)) == 0 {
			t.Errorf("no %s pin", role)
		}
	}
	for _, name := range []string{"raspi-firmware", "u-boot-rpi", "u-boot-qemu", "e2fsprogs", "libc6", "libext2fs2"} {
		if _, ok := l.Get(name); !ok {
			t.Errorf("%s not pinned", name)
		}
	}
}

func TestFetchUsesOnlyCachedFilesWithThePinnedHash(t *testing.T) {
	dir := t.TempDir()
	data := []byte("not really a deb")
	h := sha256.Sum256(data)
	p := Pin{Role: RoleLib, Name: "x", Version: "1", SHA256: hex.EncodeToString(h[:]), Size: int64(len(data)), Filename: "pool/main/x/x_1_arm64.deb"}
	c := NewCache(dir, nil, nil)
	if err := os.WriteFile(c.Path(p), data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := c.Fetch(t.Context(), p)
	if err != nil || got != c.Path(p) {
		t.Fatalf("Fetch of a good cached file: %q, %v", got, err)
	}
	if err := verify(c.Path(p), strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("verify with the wrong hash: %v", err)
	}
}

func TestFindLibFollowsSymlinksInsideTheTree(t *testing.T) {
	tree := t.TempDir()
	lib := filepath.Join(tree, "lib", "aarch64-linux-gnu")
	os.MkdirAll(lib, 0o755)
	os.WriteFile(filepath.Join(lib, "libext2fs.so.2.4"), []byte("elf"), 0o644)
	os.Symlink("libext2fs.so.2.4", filepath.Join(lib, "libext2fs.so.2"))
	os.Symlink("/lib/aarch64-linux-gnu/libext2fs.so.2.4", filepath.Join(tree, "lib", "abs.so"))
	p, ok := FindLib([]string{tree}, "libext2fs.so.2")
	if !ok || filepath.Base(p) != "libext2fs.so.2.4" {
		t.Errorf("FindLib = %q, %v", p, ok)
	}
	if p, ok := FindFile(tree, "lib/abs.so"); !ok || !strings.HasPrefix(p, tree) {
		t.Errorf("absolute link resolved outside the tree: %q, %v", p, ok)
	}
	if _, ok := FindLib([]string{tree}, "libnothere.so.1"); ok {
		t.Error("found a library that is not there")
	}
}
