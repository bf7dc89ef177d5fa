package appliance

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// mbrImage writes a disk image file of size bytes whose MBR holds the given
// entries (type, start LBA, sectors), as image's QEMU runner does.
func mbrImage(t *testing.T, path string, size int64, entries ...MBREntry) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	sector := make([]byte, 512)
	for i, e := range entries {
		b := sector[446+16*i:]
		b[4] = e.Type
		binary.LittleEndian.PutUint32(b[8:], e.Start)
		binary.LittleEndian.PutUint32(b[12:], e.Sectors)
	}
	sector[510], sector[511] = 0x55, 0xAA
	if _, err := f.WriteAt(sector, 0); err != nil {
		t.Fatal(err)
	}
}

func TestGrowLast(t *testing.T) {
	const mib = 2048 // sectors
	tests := []struct {
		name    string
		entries []MBREntry
		start   uint32
		disk    uint64
		grown   bool
		want    uint32
		wantErr bool
	}{
		{"qemu first boot", []MBREntry{{Type: 0x83, Start: mib, Sectors: 64 * mib}}, mib, 1024 * mib, true, 1023 * mib, false},
		{"already full", []MBREntry{{Type: 0x83, Start: mib, Sectors: 1023 * mib}}, mib, 1024 * mib, false, 1023 * mib, false},
		{"tail under 1 MiB is slack", []MBREntry{{Type: 0x83, Start: mib, Sectors: 1023*mib - 100}}, mib, 1024 * mib, false, 1023*mib - 100, false},
		{"pi card: data is p4 after boot and slots", []MBREntry{
			{Index: 0, Type: 0x0c, Start: mib, Sectors: 256 * mib},
			{Index: 1, Type: 0x83, Start: 257 * mib, Sectors: 512 * mib},
			{Index: 2, Type: 0x83, Start: 769 * mib, Sectors: 512 * mib},
			{Index: 3, Type: 0x83, Start: 1281 * mib, Sectors: 128 * mib}}, 1281 * mib, 30000 * mib, true, 28719 * mib, false},
		{"not the last partition", []MBREntry{
			{Index: 0, Type: 0x83, Start: mib, Sectors: 64 * mib},
			{Index: 1, Type: 0x83, Start: 65 * mib, Sectors: 64 * mib}}, mib, 1024 * mib, false, 64 * mib, false},
		{"unknown start", []MBREntry{{Type: 0x83, Start: mib, Sectors: 64 * mib}}, 4 * mib, 1024 * mib, false, 0, true},
		{"protective GPT", []MBREntry{{Type: 0xee, Start: 1, Sectors: 0xFFFFFFFF}}, 1, 1024 * mib, false, 0, true},
	}
	for _, tc := range tests {
		sector := make([]byte, 512)
		for i, e := range tc.entries {
			idx := e.Index
			if idx == 0 {
				idx = i
			}
			b := sector[446+16*idx:]
			b[4] = e.Type
			binary.LittleEndian.PutUint32(b[8:], e.Start)
			binary.LittleEndian.PutUint32(b[12:], e.Sectors)
		}
		sector[510], sector[511] = 0x55, 0xAA
		before := append([]byte(nil), sector...)
		grown, ns, err := GrowLast(sector, tc.start, tc.disk, 2048)
		if (err != nil) != tc.wantErr || grown != tc.grown || (!tc.wantErr && ns != tc.want) {
			t.Errorf("%s: GrowLast = %v, %d, %v; want %v, %d, err %v", tc.name, grown, ns, err, tc.grown, tc.want, tc.wantErr)
		}
		if !grown && !bytes.Equal(before, sector) {
			t.Errorf("%s: sector changed without growing", tc.name)
		}
		if grown {
			// Only the size and CHS-end bytes of the one entry may change.
			for i := range sector {
				if sector[i] != before[i] {
					off := i - 446
					if off < 0 || off >= 64 || !(off%16 >= 5 && off%16 <= 7 || off%16 >= 12) {
						t.Errorf("%s: byte %d changed", tc.name, i)
					}
				}
			}
		}
	}
}

func TestGrowPartitionOnImageKeepsData(t *testing.T) {
	img := filepath.Join(t.TempDir(), "data.img")
	mbrImage(t, img, 64<<20, MBREntry{Type: 0x83, Start: 2048, Sectors: 16 << 11})
	payload := []byte("messages that must survive the grow")
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt(payload, 2048*512+4096)
	f.Close()

	grown, ns, err := growPartitionOnDisk(img, 2048, 64<<11)
	if err != nil || !grown || ns != 64<<11-2048 {
		t.Fatalf("grow = %v, %d, %v; want grown to %d sectors", grown, ns, err, 64<<11-2048)
	}
	b, _ := os.ReadFile(img)
	entries, err := ParseMBR(b[:512])
	if err != nil || len(entries) != 1 || entries[0].Sectors != ns || entries[0].Start != 2048 || entries[0].Type != 0x83 {
		t.Fatalf("MBR after grow: %+v, %v", entries, err)
	}
	if !bytes.Equal(b[2048*512+4096:][:len(payload)], payload) {
		t.Fatal("partition contents changed by the grow")
	}
	// A second boot on the same disk finds nothing to do...
	if grown, _, err := growPartitionOnDisk(img, 2048, 64<<11); grown || err != nil {
		t.Fatalf("second grow = %v, %v; want nothing to do", grown, err)
	}
	// ...and a bigger disk file grows again.
	os.Truncate(img, 128<<20)
	if grown, ns, err := growPartitionOnDisk(img, 2048, 128<<11); !grown || err != nil || ns != 128<<11-2048 {
		t.Fatalf("grow after enlarging = %v, %d, %v", grown, ns, err)
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
		MBREntry{Index: 0, Type: 0x0c, Start: 2048, Sectors: 8 << 11},
		MBREntry{Index: 1, Type: 0x83, Start: 10 << 11, Sectors: 16 << 11})
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
