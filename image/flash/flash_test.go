package flash

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func testImage(t *testing.T, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(t.TempDir(), "card.img")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, data
}

func TestWriteAndVerifyAFile(t *testing.T) {
	img, data := testImage(t, 9<<20+123)
	target := filepath.Join(t.TempDir(), "target.img")
	// A longer old file: the target ends where the image does.
	os.WriteFile(target, bytes.Repeat([]byte{0xff}, 12<<20), 0o644)
	var progress bytes.Buffer
	r, err := Write(context.Background(), img, target, Options{Progress: &progress, ChunkBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(target)
	if !bytes.Equal(got, data) || r.Bytes != int64(len(data)) || r.Device {
		t.Fatalf("target holds %d bytes (equal=%v), result %+v", len(got), bytes.Equal(got, data), r)
	}
	if !strings.Contains(progress.String(), "verify") || !strings.Contains(progress.String(), "100.0%") {
		t.Errorf("progress output: %q", progress.String())
	}
	if _, err := Write(context.Background(), img, "/dev/sdzz-no-such-card", Options{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing device: %v", err)
	}
}

// loop attaches a file as a loop device (root, as CI runs).
func loop(t *testing.T, size int64) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(f, size)
	out, err := exec.Command("losetup", "--find", "--show", "--partscan", f).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup (needs root and util-linux): %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

func TestRefusesAMountedDisk(t *testing.T) {
	dev := loop(t, 32<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v %s", err, out)
	}
	mnt := t.TempDir()
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", dev, err)
	}
	defer unix.Unmount(mnt, 0)
	img, data := testImage(t, 1<<20)
	_, err := Write(context.Background(), img, dev, Options{Force: true})
	if err == nil || !strings.Contains(err.Error(), "mounted") || !strings.Contains(err.Error(), mnt) {
		t.Fatalf("flash of a mounted disk: %v, want a refusal naming the mount", err)
	}
	// The mounted ext4 writes its own blocks meanwhile (journal, lazy
	// init), so compare against the image, not a snapshot of the disk.
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, len(data))
	if _, err := io.ReadFull(f, head); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(head, data) || bytes.Equal(head[:4096], data[:4096]) {
		t.Fatal("the refused disk was written")
	}
}

func TestRefusesFixedAndHugeDisksWithoutForce(t *testing.T) {
	dev := loop(t, 8<<20)
	img, data := testImage(t, 1<<20)
	// A loop device is not removable: refused, and --force writes it.
	if _, err := Write(context.Background(), img, dev, Options{}); err == nil || !strings.Contains(err.Error(), "not a removable disk") {
		t.Fatalf("fixed disk: %v", err)
	}
	if _, err := Write(context.Background(), img, dev, Options{Force: true}); err != nil {
		t.Fatalf("--force: %v", err)
	}
	got := make([]byte, len(data))
	f, _ := os.Open(dev)
	f.ReadAt(got, 0)
	f.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("forced write did not land")
	}
	// The same device as a removable 4 TB one (a fake sysfs entry for its
	// device number): refused as bigger than any SD card.
	var st unix.Stat_t
	unix.Stat(dev, &st)
	sys := t.TempDir()
	name := filepath.Base(dev)
	os.MkdirAll(filepath.Join(sys, name), 0o755)
	os.WriteFile(filepath.Join(sys, name, "dev"), []byte(fmt.Sprintf("%d:%d\n", unix.Major(st.Rdev), unix.Minor(st.Rdev))), 0o644)
	os.WriteFile(filepath.Join(sys, name, "size"), []byte("7812500000\n"), 0o644)
	os.WriteFile(filepath.Join(sys, name, "removable"), []byte("1\n"), 0o644)
	if err := Check(dev, Options{SysBlock: sys}); err == nil || !strings.Contains(err.Error(), "bigger than any SD card") {
		t.Fatalf("4 TB disk: %v", err)
	}
	os.WriteFile(filepath.Join(sys, name, "size"), []byte("62500000\n"), 0o644)
	if err := Check(dev, Options{SysBlock: sys}); err != nil {
		t.Fatalf("a removable 32 GB card: %v", err)
	}
	// A partition is not a card.
	os.WriteFile(filepath.Join(sys, name, "partition"), []byte("1\n"), 0o644)
	if err := Check(dev, Options{SysBlock: sys}); err == nil || !strings.Contains(err.Error(), "partition") {
		t.Fatalf("partition: %v", err)
	}
}
