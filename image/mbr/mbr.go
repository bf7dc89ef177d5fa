// Package mbr reads and edits MBR partition tables: snodectl writes one onto
// the QEMU data disk (image/disk), and PID 1 grows the last partition of the
// card or disk it boots from to fill it (appliance). Only the boot sector is
// ever touched, so growing a partition moves no data.
package mbr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

const (
	SectorSize = 512
	TypeLinux  = 0x83

	entriesOffset   = 446
	diskIDOffset    = 440
	signatureOffset = 510
)

// Entry is one primary partition entry.
type Entry struct {
	Index    int // 0..3
	Type     byte
	StartLBA uint32
	Sectors  uint32
	// Bootable sets the active flag (0x80): U-Boot's distro boot scans the
	// bootable partitions of a disk for its script first.
	Bootable bool
}

// Bytes is the partition's size in bytes.
func (e Entry) Bytes() int64 { return int64(e.Sectors) * SectorSize }

// New returns a boot sector with the 0x55AA signature, the disk identifier
// (the PARTUUID prefix Linux shows for its partitions) and entries, each at
// its Index.
func New(diskID [4]byte, entries ...Entry) ([]byte, error) {
	sector := make([]byte, SectorSize)
	copy(sector[diskIDOffset:], diskID[:])
	for _, e := range entries {
		if err := PutEntry(sector, e); err != nil {
			return nil, err
		}
	}
	sector[signatureOffset], sector[signatureOffset+1] = 0x55, 0xAA
	return sector, nil
}

// PutEntry writes e into slot e.Index of sector.
func PutEntry(sector []byte, e Entry) error {
	if len(sector) < SectorSize {
		return fmt.Errorf("mbr: short sector (%d bytes)", len(sector))
	}
	if e.Index < 0 || e.Index > 3 {
		return fmt.Errorf("mbr: entry index %d, want 0..3", e.Index)
	}
	b := sector[entriesOffset+16*e.Index : entriesOffset+16*(e.Index+1)]
	b[0] = 0x00
	if e.Bootable {
		b[0] = 0x80
	}
	// CHS fields are unused by Linux; the conventional "beyond CHS range"
	// filler every modern partitioner writes.
	copy(b[1:4], []byte{0xfe, 0xff, 0xff})
	b[4] = e.Type
	copy(b[5:8], []byte{0xfe, 0xff, 0xff})
	binary.LittleEndian.PutUint32(b[8:], e.StartLBA)
	binary.LittleEndian.PutUint32(b[12:], e.Sectors)
	return nil
}

// Parse reads the used primary entries of a boot sector.
func Parse(sector []byte) ([]Entry, error) {
	if len(sector) < SectorSize {
		return nil, fmt.Errorf("mbr: short sector (%d bytes)", len(sector))
	}
	if sector[signatureOffset] != 0x55 || sector[signatureOffset+1] != 0xAA {
		return nil, errors.New("mbr: no 0x55AA signature")
	}
	var out []Entry
	for i := 0; i < 4; i++ {
		b := sector[entriesOffset+16*i : entriesOffset+16*(i+1)]
		if b[4] == 0 {
			continue
		}
		out = append(out, Entry{Index: i, Type: b[4], StartLBA: binary.LittleEndian.Uint32(b[8:]), Sectors: binary.LittleEndian.Uint32(b[12:]), Bootable: b[0] == 0x80})
	}
	return out, nil
}

// Read returns the used partition entries of a disk (an image file or a
// block device).
func Read(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mbr %s: %w", path, err)
	}
	defer f.Close()
	sector := make([]byte, SectorSize)
	if _, err := io.ReadFull(f, sector); err != nil {
		return nil, fmt.Errorf("read mbr %s: %w", path, err)
	}
	es, err := Parse(sector)
	if err != nil {
		return nil, fmt.Errorf("read mbr %s: %w", path, err)
	}
	return es, nil
}

// GrowLast extends the entry starting at start to the end of a disk of
// diskSectors, if it is the last partition and at least minGain sectors
// would be gained (small tails are left alone: alignment slack). It edits
// sector in place and reports the new size.
func GrowLast(sector []byte, start uint32, diskSectors uint64, minGain uint64) (grown bool, newSectors uint32, err error) {
	entries, err := Parse(sector)
	if err != nil {
		return false, 0, err
	}
	var me *Entry
	for i := range entries {
		if entries[i].StartLBA == start {
			me = &entries[i]
		}
	}
	if me == nil {
		return false, 0, fmt.Errorf("mbr: no partition starts at sector %d", start)
	}
	if me.Type == 0x05 || me.Type == 0x0f || me.Type == 0xee {
		return false, 0, fmt.Errorf("mbr: partition at %d is type %#x (extended or GPT), not growing", start, me.Type)
	}
	end := uint64(me.StartLBA) + uint64(me.Sectors)
	for _, e := range entries {
		if e.Index != me.Index && uint64(e.StartLBA) >= uint64(me.StartLBA) {
			return false, me.Sectors, nil // another partition follows: not ours to grow into
		}
	}
	target := diskSectors
	if target > 0xFFFFFFFF { // MBR limit: 2 TiB
		target = 0xFFFFFFFF
	}
	if target <= end || target-end < minGain {
		return false, me.Sectors, nil
	}
	ns := uint32(target - uint64(me.StartLBA))
	b := sector[entriesOffset+16*me.Index:]
	binary.LittleEndian.PutUint32(b[12:], ns)
	// CHS end: "beyond CHS range", as every modern partitioner writes.
	b[5], b[6], b[7] = 0xFE, 0xFF, 0xFF
	return true, ns, nil
}

// GrowLastOnDisk applies GrowLast to the boot sector of disk (a block device
// or an image file). The sector is written and synced before it returns, so
// the caller may tell the kernel about the new size right after.
func GrowLastOnDisk(disk string, start uint32, diskSectors, minGain uint64) (bool, uint32, error) {
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return false, 0, fmt.Errorf("open %s: %w", disk, err)
	}
	defer f.Close()
	sector := make([]byte, SectorSize)
	if _, err := io.ReadFull(f, sector); err != nil {
		return false, 0, fmt.Errorf("read mbr of %s: %w", disk, err)
	}
	grown, ns, err := GrowLast(sector, start, diskSectors, minGain)
	if err != nil || !grown {
		return false, ns, err
	}
	if err := Write(f, sector); err != nil {
		return false, 0, fmt.Errorf("write mbr of %s: %w", disk, err)
	}
	return true, ns, nil
}

// Write puts sector at the start of f and syncs it to the device.
func Write(f *os.File, sector []byte) error {
	if len(sector) != SectorSize {
		return fmt.Errorf("mbr: sector of %d bytes, want %d", len(sector), SectorSize)
	}
	if _, err := f.WriteAt(sector, 0); err != nil {
		return err
	}
	return f.Sync()
}
