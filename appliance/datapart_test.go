package appliance

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/snodebox/snodebox/image/mbr"
)

// mbrImage writes a disk image file of size bytes whose MBR holds the given
// entries, as image's QEMU runner does.
func mbrImage(t *testing.T, path string, size int64, entries ...mbr.Entry) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	sector, err := mbr.New([4]byte{}, entries...)
	if err != nil {
		t.Fatal(err)
	}
	if err := mbr.Write(f, sector); err != nil {
		t.Fatal(err)
	}
}

func TestProbeExtReadsLabelAndSize(t *testing.T) {
	mke2fs, err := exec.LookPath("mke2fs")
	if err != nil {
		mke2fs = "/sbin/mke2fs"
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 32<<20)
	if _, ok, err := probeExt(img); ok || err != nil {
		t.Fatalf("blank image probed as ext: %v %v", ok, err)
	}
	if !blank(img) {
		t.Fatal("zeroed image is not blank")
	}
	if out, err := exec.Command(mke2fs, "-t", "ext4", "-L", DataLabel, "-F", "-q", img).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v %s", err, out)
	}
	info, ok, err := probeExt(img)
	if !ok || err != nil || info.Label != DataLabel || info.Bytes != 32<<20 {
		t.Fatalf("probeExt = %+v, %v, %v; want label %s, 32 MiB", info, ok, err, DataLabel)
	}
	if blank(img) {
		t.Fatal("formatted image counted as blank")
	}
}

// fakeBlock builds /sys/class/block and /dev for one disk with partitions
// whose "devices" are image files.
func fakeBlock(t *testing.T, disk string, diskImg string, parts map[string][3]uint64, partImgs map[string]string) blockRoots {
	t.Helper()
	root := t.TempDir()
	r := blockRoots{SysBlock: filepath.Join(root, "sys/class/block"), Dev: filepath.Join(root, "dev")}
	devices := filepath.Join(root, "sys/devices/virtual/block", disk)
	os.MkdirAll(devices, 0o755)
	os.MkdirAll(r.SysBlock, 0o755)
	os.MkdirAll(r.Dev, 0o755)
	os.Symlink(devices, filepath.Join(r.SysBlock, disk))
	st, _ := os.Stat(diskImg)
	os.WriteFile(filepath.Join(devices, "size"), []byte(itoa(int(st.Size()/512))+"\n"), 0o644)
	os.Symlink(diskImg, filepath.Join(r.Dev, disk))
	for name, v := range parts {
		d := filepath.Join(devices, name)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "partition"), []byte(itoa(int(v[0]))+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "start"), []byte(itoa(int(v[1]))+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "size"), []byte(itoa(int(v[2]))+"\n"), 0o644)
		os.Symlink(d, filepath.Join(r.SysBlock, name))
		os.Symlink(partImgs[name], filepath.Join(r.Dev, name))
	}
	return r
}

func TestFindData(t *testing.T) {
	dir := t.TempDir()
	diskImg := filepath.Join(dir, "disk.img")
	mbrImage(t, diskImg, 64<<20,
		mbr.Entry{Index: 0, Type: 0x0c, StartLBA: 2048, Sectors: 8 << 11},
		mbr.Entry{Index: 1, Type: 0x83, StartLBA: 10 << 11, Sectors: 16 << 11})
	bootImg, dataImg := filepath.Join(dir, "p1.img"), filepath.Join(dir, "p2.img")
	os.WriteFile(bootImg, bytes.Repeat([]byte{1}, 4096), 0o644)
	os.WriteFile(dataImg, nil, 0o644)
	os.Truncate(dataImg, 16<<20)
	r := fakeBlock(t, "mmcblk0", diskImg, map[string][3]uint64{
		"mmcblk0p1": {1, 2048, 8 << 11},
		"mmcblk0p2": {2, 10 << 11, 16 << 11},
	}, map[string]string{"mmcblk0p1": bootImg, "mmcblk0p2": dataImg})

	// First boot: no label anywhere, the blank last Linux partition is it.
	p, err := r.findData("LABEL=snode-data")
	if err != nil || p.Name != "mmcblk0p2" || p.Disk != "mmcblk0" || p.Start != 10<<11 || p.Number != 2 {
		t.Fatalf("findData(label) on a blank card = %+v, %v", p, err)
	}
	// An explicit device path.
	if p, err := r.findData("/dev/mmcblk0p2"); err != nil || p.Name != "mmcblk0p2" {
		t.Fatalf("findData(path) = %+v, %v", p, err)
	}
	// Something was written to it but it is not ext: not ours to format
	// unless named explicitly.
	f, _ := os.OpenFile(dataImg, os.O_RDWR, 0)
	f.WriteAt([]byte("old"), 100)
	f.Close()
	if _, err := r.findData(""); err == nil {
		t.Fatal("a non-blank partition without our label was picked")
	}
	if _, err := r.findData("/dev/nope1"); err == nil {
		t.Fatal("a missing device was found")
	}
}
