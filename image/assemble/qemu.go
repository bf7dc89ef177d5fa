package assemble

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/snodebox/snodebox/image/dtb"
	"github.com/snodebox/snodebox/image/qemu"
)

// BootFiles are what one QEMU boot needs.
type BootFiles struct {
	Machine   string
	Board     string
	Kernel    string
	KVer      string
	Initrd    string
	DTB       string // raspi3b only
	Initramfs InitramfsStats
}

// ForQEMU builds kernel, initramfs and (for raspi3b) the tweaked DTB into
// dir. snoded is a prebuilt arm64 binary or "" to build one.
func (b *Builder) ForQEMU(ctx context.Context, machine, snoded, dir string) (BootFiles, error) {
	m, err := qemu.MachineFor(machine)
	if err != nil {
		return BootFiles{}, err
	}
	bf := BootFiles{Machine: m, Board: qemu.Machines[m]}
	bf.Kernel = filepath.Join(dir, "Image")
	bf.Initrd = filepath.Join(dir, "initramfs.cpio.gz")
	rawDTB := ""
	if m == "raspi3b" {
		rawDTB = filepath.Join(dir, "board.dtb")
	}
	if bf.KVer, err = b.Kernel(ctx, bf.Board, bf.Kernel, rawDTB); err != nil {
		return bf, err
	}
	if rawDTB != "" {
		bf.DTB = filepath.Join(dir, "qemu.dtb")
		if err := dtb.Tweak(rawDTB, bf.DTB, dtb.Options{RNGSeed: true, TestLED: true}); err != nil {
			return bf, fmt.Errorf("raspi3b device tree: %w", err)
		}
	}
	if bf.Initramfs, err = b.Initramfs(ctx, bf.Board, snoded, bf.Initrd); err != nil {
		return bf, err
	}
	return bf, nil
}
