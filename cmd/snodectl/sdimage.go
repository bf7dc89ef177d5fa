package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/snodebox/snodebox/image/assemble"
	"github.com/snodebox/snodebox/image/flash"
	"github.com/snodebox/snodebox/image/sdcard"
	"github.com/snodebox/snodebox/image/slot"
)

func imageBuild(ctx context.Context, args []string) error {
	step := newBoardStep("build", "output raw disk image")
	snoded := step.fs.String("snoded", "", "prebuilt static arm64 snoded (default: build it)")
	version := step.fs.String("version", "", "version stamped into snoded and the slot manifest (default: git describe)")
	slotArgs := step.fs.String("slot-bootargs", "", "extra kernel arguments for slot A (slot.env)")
	var relKeys, adminKeys keyFiles
	step.fs.Var(&relKeys, "release-key", "public key (release keygen's snodebox.pub) whose signed releases the node installs (repeatable, for rotation)")
	step.fs.Var(&adminKeys, "admin-key", "public key allowed to push updates (snodectl update push; repeatable)")
	b, err := step.builder(args)
	if err != nil {
		return err
	}
	rk, ak, err := readKeyFlags(relKeys, adminKeys)
	if err != nil {
		return err
	}
	b.Version = *version
	st, err := b.Image(ctx, assemble.ImageOptions{Board: *step.board, Out: *step.out, Snoded: *snoded, SlotBootArgs: *slotArgs, ReleaseKeys: rk, AdminKeys: ak})
	if err != nil {
		return err
	}
	fmt.Printf("%s: board %s version %s kernel %s, %d bytes (%d MiB); slot A %d bytes, build id %s\n",
		*step.out, st.Board, st.Version, st.Kernel, st.Bytes, st.Bytes>>20, st.SlotBytes, st.Manifest.BuildID[:16])
	return nil
}

func imageFlash(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snodectl image flash", flag.ContinueOnError)
	img := fs.String("image", "", "image to write (from snodectl image build); required")
	dev := fs.String("device", "", "target: the SD card's whole-disk device, e.g. /dev/sdb or /dev/mmcblk0 (or a file); required")
	force := fs.Bool("force", false, "write a disk that is not removable or is bigger than 2 TB (never a mounted one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *img == "" || *dev == "" {
		return errors.New("--image FILE and --device DEV are required")
	}
	r, err := flash.Write(ctx, *img, *dev, flash.Options{Force: *force, Progress: os.Stderr})
	if err != nil {
		return err
	}
	fmt.Printf("%s: wrote %d bytes in %.1fs, verified in %.1fs (sha256 %s)\n", *dev, r.Bytes, r.Write.Seconds(), r.Verify.Seconds(), r.SHA256)
	return nil
}

func imageSlot(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snodectl image slot", flag.ContinueOnError)
	img := fs.String("image", "", "image or card to change; required")
	which := fs.String("slot", "B", "slot to write: A or B")
	from := fs.String("from", "", "image whose slot A is copied in; required")
	trial := fs.Bool("trial", false, "select the slot for the next boot (it is committed once healthy, else the other slot boots again)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *img == "" || *from == "" {
		return errors.New("--image FILE and --from IMAGE are required")
	}
	if !slot.Valid(*which) {
		return fmt.Errorf("--slot %q: want A or B", *which)
	}
	dst, err := sdcard.Open(*img)
	if err != nil {
		return err
	}
	src, err := sdcard.Open(*from)
	if err != nil {
		return err
	}
	m, err := src.SlotManifest(ctx, "A")
	if err != nil {
		return fmt.Errorf("%s slot A: %w", *from, err)
	}
	tmp, err := os.CreateTemp("", "slot-*.img")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := src.ExtractSlot("A", tmp.Name()); err != nil {
		return err
	}
	if err := dst.WriteSlot(*which, tmp.Name()); err != nil {
		return err
	}
	bs, err := dst.BootState(ctx)
	if err != nil {
		return err
	}
	if *trial {
		bs.SetTrial(*which)
	} else {
		// Written but not selected: it must not keep attempts a previous
		// occupant earned.
		bs.Left[*which] = 0
	}
	if err := dst.SetBootState(ctx, bs); err != nil {
		return err
	}
	fmt.Printf("%s: slot %s now holds %s (%s, build %s); boot state: %s\n", *img, *which, m.Version, m.Board, m.BuildID[:16], bs)
	return nil
}

func imageShow(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snodectl image show", flag.ContinueOnError)
	img := fs.String("image", "", "image or card; required")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *img == "" {
		return errors.New("--image FILE is required")
	}
	c, err := sdcard.Open(*img)
	if err != nil {
		return err
	}
	for n := 1; n <= 4; n++ {
		e := c.Parts[n]
		fmt.Printf("p%d type %#02x start %d MiB size %d MiB bootable=%v\n", n, e.Type, e.StartLBA/2048, e.Sectors/2048, e.Bootable)
	}
	bs, err := c.BootState(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("boot state: %s\n", bs)
	for _, s := range slot.Slots {
		m, err := c.SlotManifest(ctx, s)
		if err != nil {
			fmt.Printf("slot %s: empty\n", s)
			continue
		}
		var files []string
		for _, f := range m.Files {
			files = append(files, f.Name)
		}
		fmt.Printf("slot %s: version %s board %s kernel %s build %s, %d files (%s)\n", s, m.Version, m.Board, m.Kernel, m.BuildID[:16], len(files), strings.Join(files[:min(len(files), 4)], " "))
	}
	return nil
}
