package disk

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/snodebox/snodebox/image/mbr"
)

func TestCreateWritesOneUnformattedLinuxPartitionAt1MiB(t *testing.T) {
	p := filepath.Join(t.TempDir(), "data.img")
	const size = 512 << 20
	created, extended, err := Ensure(p, size)
	if err != nil || !created || extended {
		t.Fatalf("Ensure new: created=%v extended=%v err=%v", created, extended, err)
	}
	ps, err := mbr.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 {
		t.Fatalf("%d partitions, want 1", len(ps))
	}
	part := ps[0]
	if part.Type != 0x83 || part.StartLBA != 2048 {
		t.Errorf("partition %+v, want type 0x83 at LBA 2048", part)
	}
	if end := int64(part.StartLBA)*mbr.SectorSize + part.Bytes(); end >= size {
		t.Errorf("partition ends at %d, want smaller than the disk (%d)", end, size)
	}
	// Unformatted: no ext superblock magic at partition offset + 1024 + 56.
	f, _ := os.Open(p)
	defer f.Close()
	magic := make([]byte, 2)
	f.ReadAt(magic, int64(part.StartLBA)*mbr.SectorSize+1024+56)
	if magic[0] == 0x53 && magic[1] == 0xef {
		t.Error("partition already carries an ext filesystem")
	}
}

func TestEnsureExtendsButNeverShrinksOrRepartitions(t *testing.T) {
	p := filepath.Join(t.TempDir(), "data.img")
	if _, _, err := Ensure(p, 256<<20); err != nil {
		t.Fatal(err)
	}
	before, _ := mbr.Read(p)
	_, extended, err := Ensure(p, 1<<30)
	if err != nil || !extended {
		t.Fatalf("extend: extended=%v err=%v", extended, err)
	}
	fi, _ := os.Stat(p)
	if fi.Size() != 1<<30 {
		t.Errorf("size %d after extend, want %d", fi.Size(), 1<<30)
	}
	after, _ := mbr.Read(p)
	if before[0] != after[0] {
		t.Errorf("partition changed by extend: %+v → %+v (growing it is PID 1's job)", before[0], after[0])
	}
	if _, extended, _ := Ensure(p, 128<<20); extended {
		t.Error("smaller size extended the disk")
	}
	if fi, _ := os.Stat(p); fi.Size() != 1<<30 {
		t.Errorf("disk shrank to %d", fi.Size())
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512M", 512 << 20, true}, {"1G", 1 << 30, true}, {"64MiB", 64 << 20, true},
		{"4096", 4096, true}, {"10K", 10 << 10, true}, {"", 0, false}, {"-1G", 0, false}, {"3X", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestCreateRejectsPartitionsThatDoNotFit(t *testing.T) {
	dir := t.TempDir()
	if err := Create(filepath.Join(dir, "a.img"), 16<<20, 16<<20); err == nil {
		t.Error("partition as large as the disk accepted (it starts at 1 MiB)")
	}
	if err := Create(filepath.Join(dir, "b.img"), 1<<20, 512); err == nil {
		t.Error("1 MiB disk accepted")
	}
}
