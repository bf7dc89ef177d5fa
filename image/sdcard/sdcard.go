// Package sdcard writes the raw disk image a user flashes to an SD card (or
// QEMU boots as a virtio disk): an MBR with the boot partition, two system
// slots and the data partition (DESIGN §5), without root or loop devices.
//
// Filesystems are made by Debian's own tools on files: mkfs.fat and mtools
// for the FAT partitions, mkfs.ext4 for data. They are the tools every
// distribution's image builders use, they need no privileges, and with fixed
// volume ids, fixed timestamps and sorted input they write the same bytes
// every time (Go FAT/ext4 writers exist, but none is both maintained and
// reproducible).
//
// The slots are FAT too: a slot is only ever read by U-Boot and mounted
// read-only by snoded, and the update agent writes a whole slot image to the
// partition, so a journal buys nothing; FAT keeps one toolchain for three
// partitions and one reader in U-Boot.
package sdcard

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/snodebox/snodebox/image/mbr"
	"github.com/snodebox/snodebox/image/slot"
)

const mib = 1 << 20

// Layout is the partition sizes in MiB. The first partition starts at 1 MiB.
type Layout struct {
	BootMiB, SlotMiB, DataMiB int
}

// DefaultLayout fits a 4 GB card many times over and keeps the raw image at
// 241 MiB: the Pi firmware and U-Boot need ~12 MB of the boot partition
// (room for the identity backup and a few firmware generations), a slot
// ~45 MB (a 33 MB kernel Image, a ~8 MB initramfs, DTBs): 88 MiB leaves
// room for kernels to grow; data starts small and is grown on first boot.
var DefaultLayout = Layout{BootMiB: 48, SlotMiB: 88, DataMiB: 16}

// Part is one partition's place on the disk.
type Part struct {
	Number  int
	Type    byte
	Start   int64 // bytes
	Size    int64 // bytes
	Label   string
	Boot    bool
	Purpose string
}

// MBR partition types.
const (
	TypeFAT32LBA = 0x0c // the Pi ROM looks for this on partition 1
	TypeLinux    = 0x83
)

// Parts are the partitions of l, in order.
func (l Layout) Parts() []Part {
	start := int64(mib)
	var out []Part
	add := func(n int, t byte, sizeMiB int, label, purpose string, boot bool) {
		out = append(out, Part{Number: n, Type: t, Start: start, Size: int64(sizeMiB) * mib, Label: label, Purpose: purpose, Boot: boot})
		start += int64(sizeMiB) * mib
	}
	add(slot.PartBoot, TypeFAT32LBA, l.BootMiB, "SNODE-BOOT", "boot", true)
	add(slot.PartA, TypeFAT32LBA, l.SlotMiB, "SNODE-A", "slot A", false)
	add(slot.PartB, TypeFAT32LBA, l.SlotMiB, "SNODE-B", "slot B", false)
	add(slot.PartData, TypeLinux, l.DataMiB, "snode-data", "data", false)
	return out
}

// Size is the whole image in bytes.
func (l Layout) Size() int64 {
	p := l.Parts()
	last := p[len(p)-1]
	return last.Start + last.Size
}

// Spec is what goes into an image.
type Spec struct {
	Out    string
	Layout Layout
	Boot   string // directory copied to the boot partition's root
	SlotA  string // directory copied to slot A
	SlotB  string // directory for slot B; "" leaves B empty (formatted, no files)
	// Seed makes the volume ids and the data filesystem's UUID: the same
	// seed (board and version) gives the same ids, so builds repeat byte
	// for byte; different versions get different ids.
	Seed string
	// Epoch is every file's timestamp (SOURCE_DATE_EPOCH).
	Epoch    time.Time
	Progress io.Writer
	// Scratch is where partition images are staged (default: beside Out).
	Scratch string
}

// Tools are the host programs Build runs, with the Debian package of each.
var Tools = map[string]string{"mkfs.fat": "dosfstools", "mcopy": "mtools", "mkfs.ext4": "e2fsprogs"}

func tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: install Debian package %s (make deps)", name, Tools[name])
}

func run(ctx context.Context, env []string, dir, name string, args ...string) error {
	p, err := tool(name)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, p, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func seeded(seed, what string) []byte {
	h := sha256.Sum256([]byte("snodebox image " + seed + " " + what))
	return h[:]
}

// volumeID is a FAT volume serial derived from the seed.
func volumeID(seed, label string) string {
	return fmt.Sprintf("%08x", binary.BigEndian.Uint32(seeded(seed, label)))
}

// uuid is an RFC 4122 version 4 shaped UUID derived from the seed.
func uuid(seed, what string) string {
	b := seeded(seed, what)[:16]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func (s Spec) progressf(format string, a ...any) {
	if s.Progress != nil {
		fmt.Fprintf(s.Progress, format, a...)
	}
}

// Build writes the image to s.Out (atomically: a partial image never has
// the final name).
func Build(ctx context.Context, s Spec) error {
	if s.Layout == (Layout{}) {
		s.Layout = DefaultLayout
	}
	if s.Epoch.IsZero() {
		s.Epoch = time.Unix(1767225600, 0) // 2026-01-01
	}
	scratch := s.Scratch
	if scratch == "" {
		scratch = filepath.Dir(s.Out)
	}
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp(scratch, ".sdcard-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	parts := s.Layout.Parts()
	if err := os.MkdirAll(filepath.Dir(s.Out), 0o755); err != nil {
		return fmt.Errorf("image %s: %w", s.Out, err)
	}
	tmp := s.Out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("image %s: %w", s.Out, err)
	}
	defer func() {
		f.Close()
		os.Remove(tmp)
	}()
	if err := f.Truncate(s.Layout.Size()); err != nil {
		return fmt.Errorf("image %s: %w", s.Out, err)
	}
	var entries []mbr.Entry
	for i, p := range parts {
		entries = append(entries, mbr.Entry{Index: i, Type: p.Type, StartLBA: uint32(p.Start / mbr.SectorSize), Sectors: uint32(p.Size / mbr.SectorSize), Bootable: p.Boot})
	}
	var diskID [4]byte
	copy(diskID[:], seeded(s.Seed, "disk id"))
	sector, err := mbr.New(diskID, entries...)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(sector, 0); err != nil {
		return err
	}
	sources := map[int]string{slot.PartBoot: s.Boot, slot.PartA: s.SlotA, slot.PartB: s.SlotB}
	for _, p := range parts {
		img := filepath.Join(work, fmt.Sprintf("p%d.img", p.Number))
		s.progressf("image: partition %d (%s, %d MiB)\n", p.Number, p.Purpose, p.Size/mib)
		if p.Type == TypeLinux {
			if err := makeExt4(ctx, img, p, s); err != nil {
				return err
			}
		} else if err := MakeFAT(ctx, img, p.Size, p.Label, volumeID(s.Seed, p.Label), sources[p.Number], s.Epoch); err != nil {
			return err
		}
		if err := copyInto(f, img, p.Start, p.Size, true); err != nil {
			return fmt.Errorf("partition %d: %w", p.Number, err)
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, s.Out)
}

// MakeFAT writes a FAT32 filesystem image of size bytes at img holding a
// copy of dir ("" = empty), every timestamp set to epoch.
func MakeFAT(ctx context.Context, img string, size int64, label, volID, dir string, epoch time.Time) error {
	os.Remove(img)
	// 512-byte clusters up to 64 MiB keep FAT32's 65525-cluster minimum;
	// bigger partitions get 1 KiB clusters.
	spc := "1"
	if size > 64*mib {
		spc = "2"
	}
	if err := run(ctx, nil, "", "mkfs.fat", "-C", "-F", "32", "-s", spc, "--invariant", "-i", volID, "-n", label, img, strconv.FormatInt(size/1024, 10)); err != nil {
		return err
	}
	if dir == "" {
		return nil
	}
	stage, err := stageTree(dir, filepath.Dir(img), epoch)
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	names, err := sortedNames(stage)
	if err != nil || len(names) == 0 {
		return err
	}
	// -s recursive, -m keep the (fixed) modification times, -Q stop at the
	// first error, -o overwrite without asking.
	args := append([]string{"-s", "-m", "-Q", "-o", "-i", img}, names...)
	args = append(args, "::/")
	env := []string{"MTOOLS_SKIP_CHECK=1", "SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch.Unix(), 10)}
	return run(ctx, env, stage, "mcopy", args...)
}

func makeExt4(ctx context.Context, img string, p Part, s Spec) error {
	os.Remove(img)
	id := uuid(s.Seed, p.Label)
	env := []string{"E2FSPROGS_FAKE_TIME=" + strconv.FormatInt(s.Epoch.Unix(), 10)}
	// The same options PID 1 formats with (appliance mke2fsArgs): 1%
	// reserved, lazy init; plus the fixed UUID and directory hash seed.
	return run(ctx, env, "", "mkfs.ext4", "-q", "-F", "-m", "1", "-L", p.Label, "-U", id,
		"-E", "root_owner=0:0,hash_seed="+id+",lazy_itable_init=1,lazy_journal_init=1,nodiscard",
		img, strconv.FormatInt(p.Size/1024, 10)+"k")
}

// stageTree copies dir into a fresh directory with every timestamp set to
// epoch (mcopy -m copies them, so the source's own times never leak in).
func stageTree(dir, scratch string, epoch time.Time) (string, error) {
	stage, err := os.MkdirTemp(scratch, ".stage-")
	if err != nil {
		return "", err
	}
	var dirs []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		dst := filepath.Join(stage, rel)
		switch {
		case d.IsDir():
			dirs = append(dirs, dst)
			return os.MkdirAll(dst, 0o755)
		case d.Type().IsRegular():
			if err := CopyFile(p, dst); err != nil {
				return err
			}
			return os.Chtimes(dst, epoch, epoch)
		}
		return fmt.Errorf("%s: only files and directories go on a FAT partition", p)
	})
	if err != nil {
		os.RemoveAll(stage)
		return "", fmt.Errorf("stage %s: %w", dir, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Chtimes(dirs[i], epoch, epoch)
	}
	return stage, nil
}

func sortedNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out, nil
}

// CopyFile copies src to dst through a temporary file renamed into place,
// so dst is never half written; dst's directory is created.
func CopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := copyToNew(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// copyInto writes the file img at offset off of f; it must fit in max.
// fresh says f reads as zeros there already (see writeSparse).
func copyInto(f *os.File, img string, off, max int64, fresh bool) error {
	in, err := os.Open(img)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if fi.Size() > max {
		return fmt.Errorf("%s is %d bytes, the partition %d", img, fi.Size(), max)
	}
	_, err = writeSparse(f, off, in, fresh)
	return err
}
