package initramfs

import (
	"bytes"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

func build(t *testing.T) *Archive {
	a := New()
	for _, err := range []error{
		a.File("init", []byte("\x7fELF-pretend"), 0o755),
		a.CharDev("dev/console", 0o600, 5, 1),
		a.CharDev("dev/null", 0o666, 1, 3),
		a.File("lib/modules/6.1/kernel/fs/ext4/ext4.ko", []byte("ko"), 0o644),
		a.Symlink("lib/aarch64-linux-gnu/ld-linux-aarch64.so.1", "/lib/ld-linux-aarch64.so.1"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func TestArchiveRoundTripsWithParentsAndDevices(t *testing.T) {
	var buf bytes.Buffer
	raw, gz, err := build(t).WriteGzip(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if gz != int64(buf.Len()) || raw <= 0 {
		t.Errorf("sizes raw=%d gz=%d, buffer %d", raw, gz, buf.Len())
	}
	ents, err := Read(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Entry{}
	var order []string
	for _, e := range ents {
		byName[e.Name] = e
		order = append(order, e.Name)
	}
	for _, dir := range []string{"dev", "lib", "lib/modules", "lib/modules/6.1/kernel/fs/ext4"} {
		if e, ok := byName[dir]; !ok || e.Mode&cpio.S_IFMT != cpio.S_IFDIR {
			t.Errorf("parent directory %s missing", dir)
		}
	}
	if c := byName["dev/console"]; c.Mode&cpio.S_IFMT != cpio.S_IFCHR || c.Rmajor != 5 || c.Rminor != 1 {
		t.Errorf("dev/console %+v, want char 5,1", c)
	}
	if c := byName["dev/null"]; c.Mode&cpio.S_IFMT != cpio.S_IFCHR || c.Rmajor != 1 || c.Rminor != 3 {
		t.Errorf("dev/null %+v, want char 1,3", c)
	}
	if i := byName["init"]; string(i.Data) != "\x7fELF-pretend" || i.Mode&0o777 != 0o755 || i.MTime != MTime {
		t.Errorf("init %+v", i)
	}
	if l := byName["lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"]; l.Mode&cpio.S_IFMT != cpio.S_IFLNK || string(l.Data) != "/lib/ld-linux-aarch64.so.1" {
		t.Errorf("symlink %+v", l)
	}
	// Directories come before their contents so the kernel can unpack.
	pos := map[string]int{}
	for i, n := range order {
		pos[n] = i
	}
	if pos["lib/modules/6.1/kernel/fs/ext4"] > pos["lib/modules/6.1/kernel/fs/ext4/ext4.ko"] {
		t.Error("directory after its file")
	}
}

func TestArchiveIsDeterministic(t *testing.T) {
	var a, b bytes.Buffer
	if _, _, err := build(t).WriteGzip(&a); err != nil {
		t.Fatal(err)
	}
	if _, _, err := build(t).WriteGzip(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("same inputs gave different archives")
	}
}

func TestArchiveRefusesDuplicatesAndBadNames(t *testing.T) {
	a := New()
	if err := a.File("etc/x", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.File("etc/x", nil, 0o644); err == nil {
		t.Error("duplicate file accepted")
	}
	if err := a.File("/", nil, 0o644); err == nil {
		t.Error("empty name accepted")
	}
	if err := a.File("../../x", []byte("y"), 0o644); err != nil || !a.Has("x") {
		t.Errorf("path escaping the root not cleaned into it: %v", err)
	}
}
