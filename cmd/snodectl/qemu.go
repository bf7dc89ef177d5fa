package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/snodebox/snodebox/image/disk"
	"github.com/snodebox/snodebox/image/qemu"
)

func init() {
	commands["qemu"] = qemuCmd
}

type forwardFlags []qemu.Forward

func (f *forwardFlags) String() string {
	var s []string
	for _, x := range *f {
		s = append(s, x.String())
	}
	return strings.Join(s, ",")
}

func (f *forwardFlags) Set(v string) error {
	fw, err := qemu.ParseForward(v)
	if err != nil {
		return err
	}
	*f = append(*f, fw)
	return nil
}

func qemuCmd(args []string) error {
	fs := flag.NewFlagSet("snodectl qemu", flag.ContinueOnError)
	board := fs.String("board", "qemu-arm64", "machine: qemu-arm64 (QEMU virt) or raspi3b (Pi 3 kernel, DTB, modules)")
	state := fs.String("state", "", "state directory: boot files, data disk, QMP socket (required)")
	var fwd forwardFlags
	fs.Var(&fwd, "forward", "forward a host port to the guest, 127.0.0.1:HOSTPORT-:GUESTPORT (repeatable)")
	diskSize := fs.String("disk-size", "512M", "data disk size; a bigger size extends an existing disk (raspi3b: a power of two)")
	appendArgs := fs.String("append", "", "extra kernel command line (snode.* overrides the defaults)")
	ntp := fs.String("ntp", "", "snode.ntp= time servers host[:port],… (default none: QEMU's network reaches nothing)")
	snoded := fs.String("snoded", "", "prebuilt static arm64 snoded (default: build it)")
	repo := fs.String("repo", "", "repository root")
	updateServer := fs.String("update-server", "", "with --image: a release server on host loopback (127.0.0.1:PORT) the guest reaches as http://"+qemu.UpdateGuestAddr+"/ (set update.channel to it)")
	image := fs.String("image", "", "boot this SD-card image (snodectl image build) through U-Boot; a copy is kept in --state")
	grace := fs.Duration("grace", 60*time.Second, "on interrupt, how long to wait for the guest to power off before killing QEMU")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *state == "" {
		return errors.New("--state DIR is required")
	}
	machine, err := qemu.MachineFor(*board)
	if err != nil {
		return err
	}
	size, err := disk.ParseSize(*diskSize)
	if err != nil {
		return err
	}
	if machine == "raspi3b" && size&(size-1) != 0 {
		return fmt.Errorf("--disk-size %s: raspi3b needs a power of two (QEMU's SD card)", *diskSize)
	}
	stateDir, _ := filepath.Abs(*state)
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if *image != "" {
		if *appendArgs != "" || *ntp != "" || *snoded != "" {
			return errors.New("--append, --ntp and --snoded apply to the kernel+initramfs boot; with --image the boot script builds the command line (bootargs.env on the boot partition adds to it)")
		}
		ib, err := qemu.PrepareImage(ctx, machine, *image, stateDir, size, os.Stderr)
		if err != nil {
			return err
		}
		if ib.Created {
			fmt.Fprintf(os.Stderr, "qemu: new disk %s from %s (the first boot grows its data partition)\n", ib.Disk, *image)
		}
		return runQEMU(ctx, qemu.Config{
			Machine: machine, Firmware: ib.Firmware, DTB: ib.DTB, Disk: ib.Disk,
			StateDir: stateDir, Forwards: fwd, Console: os.Stdout, Log: log, UpdateServer: *updateServer,
		}, *grace, "U-Boot, "+filepath.Base(*image))
	}
	b, err := newBuilder(*repo)
	if err != nil {
		return err
	}
	// While building, an interrupt just stops the build.
	buildCtx, stopBuild := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	bf, err := b.ForQEMU(buildCtx, machine, *snoded, filepath.Join(stateDir, "boot"))
	stopBuild()
	if err != nil {
		return err
	}
	diskPath := filepath.Join(stateDir, "data.img")
	created, extended, err := disk.Ensure(diskPath, size)
	if err != nil {
		return err
	}
	switch {
	case created:
		fmt.Fprintf(os.Stderr, "qemu: new data disk %s (%s, one unformatted partition: the first boot formats and grows it)\n", diskPath, *diskSize)
	case extended:
		fmt.Fprintf(os.Stderr, "qemu: data disk %s extended to %s (the next boot grows the partition)\n", diskPath, *diskSize)
	}
	return runQEMU(ctx, qemu.Config{
		Machine: machine, Kernel: bf.Kernel, Initrd: bf.Initrd, DTB: bf.DTB, Disk: diskPath,
		StateDir: stateDir, Forwards: fwd, Append: *appendArgs, NTP: *ntp,
		Console: os.Stdout, Log: log,
	}, *grace, "kernel "+bf.KVer)
}

// runQEMU boots cfg and runs until the guest powers off; an interrupt
// powers it off cleanly (a second one kills QEMU).
func runQEMU(ctx context.Context, cfg qemu.Config, grace time.Duration, what string) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	m, err := qemu.Start(ctx, cfg)
	if err != nil {
		return err
	}
	for _, f := range cfg.Forwards {
		fmt.Fprintf(os.Stderr, "qemu: %s:%d → guest port %d\n", f.HostAddr, f.HostPort, f.GuestPort)
	}
	fmt.Fprintf(os.Stderr, "qemu: %s booting (%s); Ctrl-C powers the guest off\n", cfg.Machine, what)
	select {
	case <-m.Done():
		return m.Wait()
	case <-sigs:
	}
	fmt.Fprintf(os.Stderr, "\nqemu: powering the guest off (QMP system_powerdown; again to kill)\n")
	go func() {
		<-sigs
		m.Kill()
	}()
	clean, err := m.Stop(grace)
	if clean {
		return nil
	}
	return err
}
