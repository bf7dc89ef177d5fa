package sdcard

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// allocated is the bytes of disk a file takes.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// needHoles skips when the test's filesystem stores zeros as zeros.
func needHoles(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, "probe")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 4<<20); err != nil {
		t.Fatal(err)
	}
	if allocated(t, p) != 0 {
		t.Skip("the test directory's filesystem has no holes")
	}
}

// mostlyZeros is 3 MiB: data, a MiB of zeros, data, a MiB of zeros, and a
// short tail that is not a whole block.
func mostlyZeros() []byte {
	var b bytes.Buffer
	b.Write(bytes.Repeat([]byte("kernel"), 1000))
	b.Write(make([]byte, 1<<20))
	b.Write(bytes.Repeat([]byte{0xa5}, 70_000))
	b.Write(make([]byte, 1<<20+12345))
	return b.Bytes()
}

func TestCopyFileKeepsBytesAndLeavesHoles(t *testing.T) {
	dir := t.TempDir()
	needHoles(t, dir)
	want := mostlyZeros()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "sub", "dst")
	if err := os.WriteFile(src, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CopyFile(src, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("copy differs: %d bytes, want %d", len(got), len(want))
	}
	// The data spans at most three 64 KiB blocks; the zeros none.
	if a := allocated(t, dst); a > 4*sparseBlock {
		t.Errorf("copy of %d bytes, %d of them data, takes %d bytes of disk", len(want), 6000+70_000, a)
	}
}

func TestWritePartOverOldDataReadsAsTheImage(t *testing.T) {
	dir := t.TempDir()
	needHoles(t, dir)
	img := mostlyZeros()
	// A card whose partition held something else: every byte 0xff.
	card := filepath.Join(dir, "card")
	old := bytes.Repeat([]byte{0xff}, 1<<20+len(img)+1<<20)
	if err := os.WriteFile(card, old, 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "img")
	if err := os.WriteFile(src, img, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(card, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := copyInto(f, src, 1<<20, int64(len(img)), false); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := os.ReadFile(card)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:1<<20], old[:1<<20]) || !bytes.Equal(got[1<<20+len(img):], old[1<<20+len(img):]) {
		t.Error("bytes outside the partition changed")
	}
	if !bytes.Equal(got[1<<20:1<<20+len(img)], img) {
		t.Error("the partition does not read as the image written over it: old data shows through")
	}
	if a := allocated(t, card); a > int64(len(old))-1<<20 {
		t.Errorf("the image's zeros still take disk: %d bytes allocated of %d", a, len(old))
	}
	if err := copyInto(f, src, 0, int64(len(img))-1, false); err == nil {
		t.Error("an image bigger than its partition was written")
	}
}
