package mbr

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// rawSector lays entries out byte by byte as the MBR format has it (entry i
// at 446+16*i: type at +4, start LBA at +8, sectors at +12, little endian;
// 0x55AA at 510), independently of PutEntry.
func rawSector(entries ...Entry) []byte {
	sector := make([]byte, SectorSize)
	for _, e := range entries {
		b := sector[446+16*e.Index:]
		b[4] = e.Type
		binary.LittleEndian.PutUint32(b[8:], e.StartLBA)
		binary.LittleEndian.PutUint32(b[12:], e.Sectors)
	}
	sector[510], sector[511] = 0x55, 0xAA
	return sector
}

func TestNewAndParseAgreeWithTheByteLayout(t *testing.T) {
	entries := []Entry{
		{Index: 0, Type: 0x0c, StartLBA: 2048, Sectors: 256 << 11},
		{Index: 3, Type: TypeLinux, StartLBA: 1281 << 11, Sectors: 128 << 11},
	}
	sector, err := New([4]byte{1, 2, 3, 4}, entries...)
	if err != nil {
		t.Fatal(err)
	}
	// New adds the disk identifier and, in each used entry, the "beyond CHS
	// range" filler to the plain layout.
	want := rawSector(entries...)
	copy(want[440:444], []byte{1, 2, 3, 4})
	for _, e := range entries {
		b := want[446+16*e.Index:]
		copy(b[1:4], []byte{0xfe, 0xff, 0xff})
		copy(b[5:8], []byte{0xfe, 0xff, 0xff})
	}
	if !bytes.Equal(sector, want) {
		t.Errorf("New wrote\n%x\nwant\n%x", sector[440:], want[440:])
	}
	got, err := Parse(sector)
	if err != nil || len(got) != 2 || got[0] != entries[0] || got[1] != entries[1] {
		t.Fatalf("Parse(New(%+v)) = %+v, %v", entries, got, err)
	}
	if got[1].Bytes() != 128<<20 {
		t.Errorf("Bytes() = %d, want %d", got[1].Bytes(), 128<<20)
	}
}

func TestParseRejectsWhatIsNoMBR(t *testing.T) {
	if _, err := Parse(make([]byte, 100)); err == nil {
		t.Error("short sector accepted")
	}
	if _, err := Parse(make([]byte, SectorSize)); err == nil {
		t.Error("sector without 0x55AA accepted")
	}
	if err := PutEntry(make([]byte, SectorSize), Entry{Index: 4, Type: TypeLinux}); err == nil {
		t.Error("fifth primary entry accepted")
	}
}

func TestGrowLast(t *testing.T) {
	const mib = 2048 // sectors
	tests := []struct {
		name    string
		entries []Entry
		start   uint32
		disk    uint64
		grown   bool
		want    uint32
		wantErr bool
	}{
		{"qemu first boot", []Entry{{Type: 0x83, StartLBA: mib, Sectors: 64 * mib}}, mib, 1024 * mib, true, 1023 * mib, false},
		{"already full", []Entry{{Type: 0x83, StartLBA: mib, Sectors: 1023 * mib}}, mib, 1024 * mib, false, 1023 * mib, false},
		{"tail under 1 MiB is slack", []Entry{{Type: 0x83, StartLBA: mib, Sectors: 1023*mib - 100}}, mib, 1024 * mib, false, 1023*mib - 100, false},
		{"pi card: data is p4 after boot and slots", []Entry{
			{Index: 0, Type: 0x0c, StartLBA: mib, Sectors: 256 * mib},
			{Index: 1, Type: 0x83, StartLBA: 257 * mib, Sectors: 512 * mib},
			{Index: 2, Type: 0x83, StartLBA: 769 * mib, Sectors: 512 * mib},
			{Index: 3, Type: 0x83, StartLBA: 1281 * mib, Sectors: 128 * mib}}, 1281 * mib, 30000 * mib, true, 28719 * mib, false},
		{"not the last partition", []Entry{
			{Index: 0, Type: 0x83, StartLBA: mib, Sectors: 64 * mib},
			{Index: 1, Type: 0x83, StartLBA: 65 * mib, Sectors: 64 * mib}}, mib, 1024 * mib, false, 64 * mib, false},
		{"unknown start", []Entry{{Type: 0x83, StartLBA: mib, Sectors: 64 * mib}}, 4 * mib, 1024 * mib, false, 0, true},
		{"protective GPT", []Entry{{Type: 0xee, StartLBA: 1, Sectors: 0xFFFFFFFF}}, 1, 1024 * mib, false, 0, true},
	}
	for _, tc := range tests {
		sector := rawSector(tc.entries...)
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

func TestGrowLastOnDiskKeepsData(t *testing.T) {
	img := filepath.Join(t.TempDir(), "data.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 20)
	f.WriteAt(rawSector(Entry{Type: 0x83, StartLBA: 2048, Sectors: 16 << 11}), 0)
	payload := []byte("messages that must survive the grow")
	f.WriteAt(payload, 2048*512+4096)
	f.Close()

	grown, ns, err := GrowLastOnDisk(img, 2048, 64<<11, 2048)
	if err != nil || !grown || ns != 64<<11-2048 {
		t.Fatalf("grow = %v, %d, %v; want grown to %d sectors", grown, ns, err, 64<<11-2048)
	}
	b, _ := os.ReadFile(img)
	entries, err := Read(img)
	if err != nil || len(entries) != 1 || entries[0].Sectors != ns || entries[0].StartLBA != 2048 || entries[0].Type != 0x83 {
		t.Fatalf("MBR after grow: %+v, %v", entries, err)
	}
	if !bytes.Equal(b[2048*512+4096:][:len(payload)], payload) {
		t.Fatal("partition contents changed by the grow")
	}
	// A second boot on the same disk finds nothing to do...
	if grown, _, err := GrowLastOnDisk(img, 2048, 64<<11, 2048); grown || err != nil {
		t.Fatalf("second grow = %v, %v; want nothing to do", grown, err)
	}
	// ...and a bigger disk file grows again.
	os.Truncate(img, 128<<20)
	if grown, ns, err := GrowLastOnDisk(img, 2048, 128<<11, 2048); !grown || err != nil || ns != 128<<11-2048 {
		t.Fatalf("grow after enlarging = %v, %d, %v", grown, ns, err)
	}
}
