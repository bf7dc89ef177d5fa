package appliance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/snodebox/snodebox/image/mbr"
)

// blockRoots are where block devices are looked up (tests use a fake tree).
type blockRoots struct {
	SysBlock string // /sys/class/block
	Dev      string // /dev
}

var systemBlock = blockRoots{SysBlock: "/sys/class/block", Dev: "/dev"}

// partition is a partition as sysfs describes it.
type partition struct {
	Name    string // vda1, mmcblk0p4
	Disk    string // vda, mmcblk0
	Number  int
	Start   uint64 // 512-byte sectors
	Sectors uint64
}

func (r blockRoots) dev(name string) string { return filepath.Join(r.Dev, name) }

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// partitionInfo describes name (a partition) from sysfs.
func (r blockRoots) partitionInfo(name string) (partition, error) {
	dir := filepath.Join(r.SysBlock, name)
	num, err := readUint(filepath.Join(dir, "partition"))
	if err != nil {
		return partition{}, fmt.Errorf("%s is not a partition: %w", name, err)
	}
	p := partition{Name: name, Number: int(num)}
	if p.Start, err = readUint(filepath.Join(dir, "start")); err != nil {
		return p, fmt.Errorf("%s start: %w", name, err)
	}
	if p.Sectors, err = readUint(filepath.Join(dir, "size")); err != nil {
		return p, fmt.Errorf("%s size: %w", name, err)
	}
	// /sys/class/block/vda1 → ../../devices/.../block/vda/vda1: the parent
	// directory is the disk.
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return p, fmt.Errorf("%s: %w", name, err)
	}
	p.Disk = filepath.Base(filepath.Dir(real))
	return p, nil
}

// diskSectors is a whole disk's size in 512-byte sectors.
func (r blockRoots) diskSectors(disk string) (uint64, error) {
	return readUint(filepath.Join(r.SysBlock, disk, "size"))
}

// partitions lists every partition sysfs knows, sorted by name.
func (r blockRoots) partitions() []partition {
	ents, _ := os.ReadDir(r.SysBlock)
	var out []partition
	for _, e := range ents {
		if p, err := r.partitionInfo(e.Name()); err == nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// DataLabel is the data partition's filesystem label (contract (f)).
const DataLabel = "snode-data"

// findData resolves snode.data ("/dev/vda1", "LABEL=snode-data" or "").
// A label only exists once the filesystem does, so on first boot (blank
// partition) the data partition is the last Linux (0x83) partition of a
// disk that has no filesystem yet.
func (r blockRoots) findData(spec string) (partition, error) {
	if spec != "" && !strings.HasPrefix(spec, "LABEL=") {
		name := filepath.Base(spec)
		return r.partitionInfo(name)
	}
	label := strings.TrimPrefix(spec, "LABEL=")
	if label == "" {
		label = DataLabel
	}
	parts := r.partitions()
	for _, p := range parts {
		if info, ok, _ := probeExt(r.dev(p.Name)); ok && info.Label == label {
			return p, nil
		}
	}
	for _, p := range parts {
		if blank(r.dev(p.Name)) && r.mbrType(p) == 0x83 && r.isLast(p, parts) {
			return p, nil
		}
	}
	return partition{}, fmt.Errorf("no partition labelled %s (and no blank Linux partition to format)", label)
}

func (r blockRoots) mbrType(p partition) byte {
	f, err := os.Open(r.dev(p.Disk))
	if err != nil {
		return 0
	}
	defer f.Close()
	sector := make([]byte, mbr.SectorSize)
	if _, err := f.ReadAt(sector, 0); err != nil {
		return 0
	}
	entries, err := mbr.Parse(sector)
	if err != nil {
		return 0
	}
	for _, e := range entries {
		if uint64(e.StartLBA) == p.Start {
			return e.Type
		}
	}
	return 0
}

func (r blockRoots) isLast(p partition, all []partition) bool {
	for _, o := range all {
		if o.Disk == p.Disk && o.Start > p.Start {
			return false
		}
	}
	return true
}

// blank: the first 64 KiB hold only zeros, i.e. nothing was ever written
// there. Only such a partition is formatted without being named explicitly.
func blank(dev string) bool {
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	n, _ := f.ReadAt(b, 0)
	if n == 0 {
		return false
	}
	for _, c := range b[:n] {
		if c != 0 {
			return false
		}
	}
	return true
}

// waitFor polls until cond holds or d passes: block devices appear
// asynchronously after their driver modules load.
func waitFor(d time.Duration, cond func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var errNoBoot = errors.New("no boot partition")

// findBoot finds the FAT boot partition (Pi: p1, MBR type 0x0c).
func (r blockRoots) findBoot() (partition, error) {
	for _, p := range r.partitions() {
		switch r.mbrType(p) {
		case 0x0b, 0x0c, 0x0e, 0x06, 0x04, 0x01:
			if isFAT(r.dev(p.Name)) {
				return p, nil
			}
		}
	}
	return partition{}, errNoBoot
}
