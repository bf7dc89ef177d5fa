package appliance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// MBR partition table handling for growing the data partition (contract
// (g)): the data partition is the last one on the disk; on first boot (and
// whenever the disk got bigger) its entry is rewritten to end at the end of
// the disk. Nothing but the one 16-byte entry changes, so no data moves.

const (
	sectorSize   = 512
	mbrEntries   = 446
	mbrSignature = 510
)

// MBREntry is one primary partition entry.
type MBREntry struct {
	Index   int // 0..3
	Type    byte
	Start   uint32 // LBA
	Sectors uint32
}

// ParseMBR reads the four primary entries of a boot sector.
func ParseMBR(sector []byte) ([]MBREntry, error) {
	if len(sector) < sectorSize {
		return nil, fmt.Errorf("mbr: short sector (%d bytes)", len(sector))
	}
	if sector[mbrSignature] != 0x55 || sector[mbrSignature+1] != 0xAA {
		return nil, errors.New("mbr: no 0x55AA signature")
	}
	var out []MBREntry
	for i := 0; i < 4; i++ {
		e := sector[mbrEntries+16*i : mbrEntries+16*(i+1)]
		if e[4] == 0 {
			continue
		}
		out = append(out, MBREntry{Index: i, Type: e[4], Start: binary.LittleEndian.Uint32(e[8:]), Sectors: binary.LittleEndian.Uint32(e[12:])})
	}
	return out, nil
}

// GrowLast extends the entry starting at start to the end of a disk of
// diskSectors, if it is the last partition and at least minGain sectors
// would be gained (small tails are left alone: alignment slack). It edits
// sector in place and reports the new size.
func GrowLast(sector []byte, start uint32, diskSectors uint64, minGain uint64) (grown bool, newSectors uint32, err error) {
	entries, err := ParseMBR(sector)
	if err != nil {
		return false, 0, err
	}
	var me *MBREntry
	for i := range entries {
		if entries[i].Start == start {
			me = &entries[i]
		}
	}
	if me == nil {
		return false, 0, fmt.Errorf("mbr: no partition starts at sector %d", start)
	}
	if me.Type == 0x05 || me.Type == 0x0f || me.Type == 0xee {
		return false, 0, fmt.Errorf("mbr: partition at %d is type %#x (extended or GPT), not growing", start, me.Type)
	}
	end := uint64(me.Start) + uint64(me.Sectors)
	for _, e := range entries {
		if e.Index != me.Index && uint64(e.Start) >= uint64(me.Start) {
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
	ns := uint32(target - uint64(me.Start))
	e := sector[mbrEntries+16*me.Index:]
	binary.LittleEndian.PutUint32(e[12:], ns)
	// CHS end: "beyond CHS range", as every modern partitioner writes.
	e[5], e[6], e[7] = 0xFE, 0xFF, 0xFF
	return true, ns, nil
}

// growPartitionOnDisk rewrites the MBR of disk (a block device or an image
// file) so the partition at start fills diskSectors. The sector is written
// and synced before the kernel is told (see reread).
func growPartitionOnDisk(disk string, start uint32, diskSectors uint64) (bool, uint32, error) {
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return false, 0, fmt.Errorf("open %s: %w", disk, err)
	}
	defer f.Close()
	sector := make([]byte, sectorSize)
	if _, err := io.ReadFull(f, sector); err != nil {
		return false, 0, fmt.Errorf("read mbr of %s: %w", disk, err)
	}
	grown, ns, err := GrowLast(sector, start, diskSectors, 2048)
	if err != nil || !grown {
		return false, ns, err
	}
	if _, err := f.WriteAt(sector, 0); err != nil {
		return false, 0, fmt.Errorf("write mbr of %s: %w", disk, err)
	}
	if err := f.Sync(); err != nil {
		return false, 0, fmt.Errorf("sync mbr of %s: %w", disk, err)
	}
	return true, ns, nil
}
