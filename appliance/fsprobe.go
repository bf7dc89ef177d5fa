package appliance

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// extInfo is what the ext2/3/4 superblock says.
type extInfo struct {
	Label string
	Bytes uint64 // filesystem size
}

// probeExt reads the ext superblock of dev (1024 bytes in). ok is false when
// there is no ext filesystem.
func probeExt(dev string) (info extInfo, ok bool, err error) {
	f, err := os.Open(dev)
	if err != nil {
		return info, false, fmt.Errorf("open %s: %w", dev, err)
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil && err != io.EOF {
		return info, false, fmt.Errorf("read superblock of %s: %w", dev, err)
	}
	return parseExtSuperblock(sb)
}

func parseExtSuperblock(sb []byte) (extInfo, bool, error) {
	var info extInfo
	if len(sb) < 0x200 || binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return info, false, nil
	}
	blocks := uint64(binary.LittleEndian.Uint32(sb[0x4:]))
	featIncompat := binary.LittleEndian.Uint32(sb[0x60:])
	if featIncompat&0x80 != 0 { // 64bit
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	logBlock := binary.LittleEndian.Uint32(sb[0x18:])
	if logBlock > 6 {
		return info, false, fmt.Errorf("superblock: block size 2^(10+%d) is not ext", logBlock)
	}
	info.Bytes = blocks * (1024 << logBlock)
	info.Label = string(bytes.TrimRight(sb[0x78:0x88], "\x00"))
	return info, true, nil
}

// isFAT reports whether dev starts with a FAT boot sector.
func isFAT(dev string) bool {
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := io.ReadFull(f, b); err != nil {
		return false
	}
	return b[510] == 0x55 && b[511] == 0xAA && (bytes.HasPrefix(b[0x36:], []byte("FAT")) || bytes.HasPrefix(b[0x52:], []byte("FAT32")))
}
