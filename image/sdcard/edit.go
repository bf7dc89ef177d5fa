package sdcard

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/snodebox/snodebox/image/mbr"
	"github.com/snodebox/snodebox/image/slot"
)

// Card is a built image (or a card's block device) opened for host-side
// reading and editing: what a user does with a card in a PC's reader.
type Card struct {
	Path  string
	Parts map[int]mbr.Entry // by partition number
}

// Open reads the image's partition table.
func Open(path string) (*Card, error) {
	es, err := mbr.Read(path)
	if err != nil {
		return nil, err
	}
	c := &Card{Path: path, Parts: map[int]mbr.Entry{}}
	for _, e := range es {
		c.Parts[e.Index+1] = e
	}
	for _, n := range []int{slot.PartBoot, slot.PartA, slot.PartB, slot.PartData} {
		if _, ok := c.Parts[n]; !ok {
			return nil, fmt.Errorf("%s: no partition %d: not a snodebox image", path, n)
		}
	}
	return c, nil
}

func (c *Card) mtoolsImage(part int) string {
	return c.Path + "@@" + strconv.FormatInt(int64(c.Parts[part].StartLBA)*mbr.SectorSize, 10)
}

// ReadFile reads a file from a FAT partition.
func (c *Card) ReadFile(ctx context.Context, part int, name string) ([]byte, error) {
	p, err := tool("mcopy")
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, p, "-n", "-i", c.mtoolsImage(part), "::/"+name, "-")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("read %s from partition %d of %s: %w", name, part, c.Path, err)
	}
	return out, nil
}

// WriteFile puts a file on a FAT partition (replacing it).
func (c *Card) WriteFile(ctx context.Context, part int, name string, data []byte) error {
	dir, err := os.MkdirTemp("", "sdcard-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, filepath.Base(name))
	if err := os.WriteFile(src, data, 0o644); err != nil {
		return err
	}
	if err := run(ctx, []string{"MTOOLS_SKIP_CHECK=1"}, "", "mcopy", "-o", "-i", c.mtoolsImage(part), src, "::/"+name); err != nil {
		return fmt.Errorf("write %s to partition %d of %s: %w", name, part, c.Path, err)
	}
	return nil
}

// BootState reads bootstate.txt (Default when the card has none yet).
func (c *Card) BootState(ctx context.Context) (slot.BootState, error) {
	data, err := c.ReadFile(ctx, slot.PartBoot, slot.StateFile)
	if err != nil {
		return slot.Default(), nil
	}
	return slot.Parse(data)
}

// SetBootState writes bootstate.txt.
func (c *Card) SetBootState(ctx context.Context, bs slot.BootState) error {
	return c.WriteFile(ctx, slot.PartBoot, slot.StateFile, bs.Marshal())
}

// SlotManifest reads a slot's manifest.
func (c *Card) SlotManifest(ctx context.Context, s string) (slot.Manifest, error) {
	data, err := c.ReadFile(ctx, slot.Partition(s), slot.ManifestFile)
	if err != nil {
		return slot.Manifest{}, err
	}
	return slot.ParseManifest(data)
}

// WriteSlot writes a slot image (a FAT filesystem made by MakeSlotImage)
// over slot s's partition.
func (c *Card) WriteSlot(s, img string) error { return c.WritePart(slot.Partition(s), img) }

// ExtractSlot copies slot s's partition to out (a slot image).
func (c *Card) ExtractSlot(s, out string) error { return c.ExtractPart(slot.Partition(s), out) }

// WritePart writes a partition image over partition n.
func (c *Card) WritePart(n int, img string) error {
	e := c.Parts[n]
	f, err := os.OpenFile(c.Path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := copyInto(f, img, int64(e.StartLBA)*mbr.SectorSize, e.Bytes(), false); err != nil {
		return fmt.Errorf("write partition %d of %s: %w", n, c.Path, err)
	}
	return f.Sync()
}

// ExtractPart copies partition n to out.
func (c *Card) ExtractPart(n int, out string) error {
	e := c.Parts[n]
	in, err := os.Open(c.Path)
	if err != nil {
		return err
	}
	defer in.Close()
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := copyToNew(o, io.NewSectionReader(in, int64(e.StartLBA)*mbr.SectorSize, e.Bytes())); err != nil {
		o.Close()
		return fmt.Errorf("read partition %d of %s: %w", n, c.Path, err)
	}
	return o.Close()
}

// MakeSlotImage writes a slot filesystem image holding dir: what an update
// writes to the start of the other slot's partition. size 0 fits the
// content with room to spare (FAT32's smallest is 33 MiB); the filesystem
// says its own size, so the rest of the partition is never read.
func MakeSlotImage(ctx context.Context, img string, size int64, dir, seed string, epoch time.Time) error {
	if epoch.IsZero() {
		epoch = time.Unix(1767225600, 0)
	}
	if size == 0 {
		var n int64
		filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				n += fi.Size()
			}
			return nil
		})
		size = (n + n/4 + 4*mib + mib - 1) / mib * mib
		if size < 40*mib {
			size = 40 * mib
		}
	}
	if max := int64(DefaultLayout.SlotMiB) * mib; size > max {
		return fmt.Errorf("slot image of %d MiB does not fit a %d MiB slot", size/mib, max/mib)
	}
	return MakeFAT(ctx, img, size, "SNODE-SLOT", volumeID(seed, "slot"), dir, epoch)
}

// CopyOut copies every file of a FAT partition into dir.
func (c *Card) CopyOut(ctx context.Context, part int, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := run(ctx, []string{"MTOOLS_SKIP_CHECK=1"}, "", "mcopy", "-s", "-n", "-i", c.mtoolsImage(part), "::/*", dir); err != nil {
		return fmt.Errorf("copy partition %d of %s: %w", part, c.Path, err)
	}
	return nil
}

// ReadFAT reads a file from a bare FAT filesystem image (a slot image).
func ReadFAT(ctx context.Context, img, name string) ([]byte, error) {
	p, err := tool("mcopy")
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, p, "-n", "-i", img, "::/"+name, "-")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("read %s from %s: %w", name, img, err)
	}
	return out, nil
}
