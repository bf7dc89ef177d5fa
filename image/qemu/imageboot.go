package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/snodebox/snodebox/image/dtb"
	"github.com/snodebox/snodebox/image/sdcard"
	"github.com/snodebox/snodebox/image/slot"
)

// ImageBoot is a disk image prepared in a state directory.
type ImageBoot struct {
	Disk     string // the kept copy QEMU boots (and writes)
	Firmware string // U-Boot from the image's boot partition
	DTB      string // raspi3b: the firmware's device tree
	Created  bool   // the copy was made now
	Refresh  bool   // the image's system was newer: boot and slot A refreshed
}

// DiskName is the kept copy's name in a state directory.
const DiskName = "disk.img"

// PrepareImage keeps a copy of image in stateDir, so reruns keep their data
// and slot state, grown to size bytes (raspi3b: a power of two, as QEMU's
// SD card wants; the first boot grows the data partition into it). When the
// image was rebuilt since the copy was made or last refreshed, the copy's
// boot partition and slot A are refreshed from it (which selects slot A),
// as if the user reflashed the system but kept the data partition.
func PrepareImage(ctx context.Context, machine, image, stateDir string, size int64, log io.Writer) (ImageBoot, error) {
	var ib ImageBoot
	if log == nil {
		log = io.Discard
	}
	src, err := sdcard.Open(image)
	if err != nil {
		return ib, err
	}
	want, err := src.SlotManifest(ctx, "A")
	if err != nil {
		return ib, fmt.Errorf("image %s slot A: %w", image, err)
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return ib, err
	}
	ib.Disk = filepath.Join(stateDir, DiskName)
	if _, err := os.Stat(ib.Disk); os.IsNotExist(err) {
		if err := sdcard.CopyFile(image, ib.Disk); err != nil {
			return ib, err
		}
		ib.Created = true
	} else if err != nil {
		return ib, err
	}
	dst, err := sdcard.Open(ib.Disk)
	if err != nil {
		return ib, fmt.Errorf("kept disk: %w", err)
	}
	// The image's system as last copied: a rebuilt image (a new build id)
	// refreshes the kept card; the same image never does, whatever the
	// card's slots hold since (updates, rollbacks).
	seen := filepath.Join(stateDir, "image-build-id")
	if !ib.Created {
		last, _ := os.ReadFile(seen)
		if string(last) != want.BuildID {
			fmt.Fprintf(log, "qemu: %s has a new system (version %s): refreshing the boot partition and slot A of %s, keeping its data\n", image, want.Version, ib.Disk)
			if err := refreshSystem(src, dst); err != nil {
				return ib, err
			}
			ib.Refresh = true
		}
	}
	if err := os.WriteFile(seen, []byte(want.BuildID), 0o644); err != nil {
		return ib, err
	}
	fi, err := os.Stat(ib.Disk)
	if err != nil {
		return ib, err
	}
	if fi.Size() < size {
		if err := os.Truncate(ib.Disk, size); err != nil {
			return ib, fmt.Errorf("grow %s: %w", ib.Disk, err)
		}
	}
	if machine == "raspi3b" {
		if fi, _ := os.Stat(ib.Disk); fi.Size()&(fi.Size()-1) != 0 {
			p := int64(1)
			for p < fi.Size() {
				p <<= 1
			}
			if err := os.Truncate(ib.Disk, p); err != nil {
				return ib, err
			}
		}
		// QEMU resets the machine the moment the BCM2835 PM watchdog is
		// started (hw/misc/bcm2835_powermgt.c), so the node leaves it closed.
		if err := dst.WriteFile(ctx, slot.PartBoot, slot.BootArgsFile, []byte("user_bootargs=snode.watchdog=0\n")); err != nil {
			return ib, err
		}
	}
	ib.Firmware = filepath.Join(stateDir, "u-boot.bin")
	fw, err := dst.ReadFile(ctx, slot.PartBoot, "u-boot.bin")
	if err != nil {
		return ib, err
	}
	if err := os.WriteFile(ib.Firmware, fw, 0o644); err != nil {
		return ib, err
	}
	if machine == "raspi3b" {
		raw, err := dst.ReadFile(ctx, slot.PartBoot, "bcm2837-rpi-3-b.dtb")
		if err != nil {
			return ib, fmt.Errorf("raspi3b needs the Pi 3 device tree on the boot partition: %w", err)
		}
		rawPath := filepath.Join(stateDir, "firmware-raw.dtb")
		if err := os.WriteFile(rawPath, raw, 0o644); err != nil {
			return ib, err
		}
		ib.DTB = filepath.Join(stateDir, "firmware.dtb")
		if err := dtb.Tweak(rawPath, ib.DTB, dtb.Options{RNGSeed: true, TestLED: true}); err != nil {
			return ib, fmt.Errorf("raspi3b device tree: %w", err)
		}
	}
	return ib, nil
}

func refreshSystem(src, dst *sdcard.Card) error {
	for _, n := range []int{slot.PartBoot, slot.PartA} {
		if src.Parts[n].Sectors != dst.Parts[n].Sectors || src.Parts[n].StartLBA != dst.Parts[n].StartLBA {
			return fmt.Errorf("the image's partition %d does not match the kept disk's (another layout): remove %s to start over", n, dst.Path)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst.Path), ".part-*")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	for _, n := range []int{slot.PartBoot, slot.PartA} {
		if err := src.ExtractPart(n, tmp.Name()); err != nil {
			return err
		}
		if err := dst.WritePart(n, tmp.Name()); err != nil {
			return err
		}
	}
	return nil
}
