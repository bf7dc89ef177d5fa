// Package disk creates the data disk a QEMU boot uses: a raw
// file with an MBR holding one Linux partition (type 0x83) that starts at
// 1 MiB and is left smaller than the disk and unformatted, so PID 1's first
// boot formats it and grows it, as it would on a freshly flashed SD card.
package disk

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	"github.com/snodebox/snodebox/image/mbr"
)

// StartLBA is where the data partition starts: 1 MiB, the alignment every
// partitioner uses.
const StartLBA = 2048

// InitialPartitionBytes is the size of the partition a new disk gets: small
// enough that the first boot has growing to do, large enough for ext4.
func InitialPartitionBytes(disk int64) int64 {
	p := int64(64 << 20)
	if max := (disk - StartLBA*mbr.SectorSize) / 2; p > max {
		p = max
	}
	return p &^ (mbr.SectorSize - 1)
}

// Create writes a new sparse disk file of size bytes with an MBR holding one
// unformatted Linux partition of partBytes at 1 MiB.
func Create(path string, size, partBytes int64) error {
	if size < 8<<20 {
		return fmt.Errorf("disk %s: size %d too small (at least 8 MiB)", path, size)
	}
	if partBytes <= 0 || StartLBA*mbr.SectorSize+partBytes > size {
		return fmt.Errorf("disk %s: partition of %d bytes does not fit a %d-byte disk", path, partBytes, size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create disk %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("create disk %s: %w", path, err)
	}
	// Disk identifier: the PARTUUID prefix Linux shows for the partition.
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return fmt.Errorf("create disk %s: %w", path, err)
	}
	sector, err := mbr.New(id, mbr.Entry{Type: mbr.TypeLinux, StartLBA: StartLBA, Sectors: uint32(partBytes / mbr.SectorSize)})
	if err != nil {
		return fmt.Errorf("create disk %s: %w", path, err)
	}
	if err := mbr.Write(f, sector); err != nil {
		return fmt.Errorf("create disk %s: %w", path, err)
	}
	return nil
}

// Ensure makes path a data disk of at least size bytes: it creates a new one
// (contract layout) when missing, and extends a smaller file (never shrinks,
// never touches the partition table: growing it is PID 1's job).
func Ensure(path string, size int64) (created, extended bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return true, false, Create(path, size, InitialPartitionBytes(size))
	}
	if err != nil {
		return false, false, fmt.Errorf("data disk %s: %w", path, err)
	}
	if fi.Size() >= size {
		return false, false, nil
	}
	if err := os.Truncate(path, size); err != nil {
		return false, false, fmt.Errorf("extend data disk %s to %d: %w", path, size, err)
	}
	return false, true, nil
}

// ParseSize reads sizes like 512M, 1G, 64MiB or plain bytes.
func ParseSize(s string) (int64, error) {
	var n int64
	var unit string
	if _, err := fmt.Sscanf(s, "%d%s", &n, &unit); err != nil {
		if _, err2 := fmt.Sscanf(s, "%d", &n); err2 != nil {
			return 0, fmt.Errorf("size %q: want a number with an optional K, M or G suffix", s)
		}
		unit = ""
	}
	mult := map[string]int64{"": 1, "K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20, "G": 1 << 30, "GiB": 1 << 30}
	m, ok := mult[unit]
	if !ok || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number with an optional K, M or G suffix", s)
	}
	return n * m, nil
}
