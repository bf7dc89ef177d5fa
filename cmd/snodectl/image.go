package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/snodebox/snodebox/image/assemble"
	"github.com/snodebox/snodebox/image/debpkg"
)

func init() {
	commands["image"] = imageCmd
}

func imageUsage() error {
	return errors.New(`usage: snodectl image <build|flash|slot|show|lock|fetch|initramfs|kernel> [flags]
  build --board B --out FILE [--snoded BIN] [--version V]   a flashable SD-card image (boot, slot A, slot B, data)
  flash --image FILE --device /dev/sdX [--force]            write it to a card and read it back
  slot --image FILE --slot A|B --from IMAGE [--trial]       copy a slot from another image (boot it next with --trial)
  show --image FILE                                         partitions, slots and boot state of an image or card
  lock [--check|--refresh]                  print, check against the archive, or re-resolve and rewrite image/debian.lock
  fetch [--all]                             download and verify the pinned packages into build/debian
  initramfs --board B --out FILE [--snoded PATH]
  kernel --board B --out FILE [--dtb-out FILE]
boards: qemu-arm64, rpi3, rpi4`)
}

func imageCmd(args []string) error {
	if len(args) == 0 {
		return imageUsage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "build":
		return imageBuild(ctx, args[1:])
	case "flash":
		return imageFlash(ctx, args[1:])
	case "slot":
		return imageSlot(ctx, args[1:])
	case "show":
		return imageShow(ctx, args[1:])
	case "lock":
		return imageLock(ctx, args[1:])
	case "fetch":
		return imageFetch(ctx, args[1:])
	case "initramfs":
		return imageInitramfs(ctx, args[1:])
	case "kernel":
		return imageKernel(ctx, args[1:])
	}
	return imageUsage()
}

func newBuilder(repo string) (*assemble.Builder, error) {
	if repo == "" {
		r, err := assemble.FindRepo("")
		if err != nil {
			return nil, err
		}
		repo = r
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return assemble.New(repo, log, os.Stderr), nil
}

func imageLock(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snodectl image lock", flag.ContinueOnError)
	refresh := fs.Bool("refresh", false, "re-resolve every package against the archive and rewrite the lock")
	check := fs.Bool("check", false, "report pins the archive has moved past (exit 1 when any)")
	repo := fs.String("repo", "", "repository root (default: found from the working directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := newBuilder(*repo)
	if err != nil {
		return err
	}
	if *refresh {
		l, err := b.Cache.Resolve(ctx)
		if err != nil {
			return err
		}
		if err := l.Write(b.Paths.Lock()); err != nil {
			return err
		}
		os.Stdout.Write(l.Bytes())
		return nil
	}
	l, err := debpkg.ReadLock(b.Paths.Lock())
	if err != nil {
		return err
	}
	if *check {
		drift, err := b.Cache.Check(ctx, l)
		if err != nil {
			return err
		}
		for _, d := range drift {
			fmt.Printf("%s %s: pinned %s, archive has %s %s\n", d.Pin.Role, d.Pin.Name, d.Pin.Version, d.Candidate.Name, d.Candidate.Version)
		}
		if len(drift) > 0 {
			return fmt.Errorf("%d pins behind the archive: run `snodectl image lock --refresh`", len(drift))
		}
		fmt.Println("lock matches the archive")
		return nil
	}
	os.Stdout.Write(l.Bytes())
	return nil
}

func imageFetch(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snodectl image fetch", flag.ContinueOnError)
	all := fs.Bool("all", false, "also fetch packages only later image work uses (u-boot)")
	repo := fs.String("repo", "", "repository root")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := newBuilder(*repo)
	if err != nil {
		return err
	}
	l, err := b.Lock()
	if err != nil {
		return err
	}
	for _, p := range l.Pins {
		if p.Role == debpkg.RoleUBoot && !*all {
			continue
		}
		path, err := b.Cache.Fetch(ctx, p)
		if err != nil {
			return err
		}
		fmt.Printf("%s %s %s\n", p.Name, p.Version, path)
	}
	return nil
}

// boardStep holds the flags every per-board build step takes; a step adds
// its own to fs before calling builder.
type boardStep struct {
	fs               *flag.FlagSet
	board, out, repo *string
}

func newBoardStep(name, outHelp string) *boardStep {
	fs := flag.NewFlagSet("snodectl image "+name, flag.ContinueOnError)
	return &boardStep{
		fs:    fs,
		board: fs.String("board", "qemu-arm64", "board: qemu-arm64, rpi3, rpi4"),
		out:   fs.String("out", "", outHelp+"; required"),
		repo:  fs.String("repo", "", "repository root"),
	}
}

// builder parses args and returns the image builder for the repository.
func (st *boardStep) builder(args []string) (*assemble.Builder, error) {
	if err := st.fs.Parse(args); err != nil {
		return nil, err
	}
	if *st.out == "" {
		return nil, errors.New("--out FILE is required")
	}
	return newBuilder(*st.repo)
}

func imageInitramfs(ctx context.Context, args []string) error {
	step := newBoardStep("initramfs", "output file (gzip-compressed newc cpio)")
	snoded := step.fs.String("snoded", "", "prebuilt static arm64 snoded (default: build it)")
	b, err := step.builder(args)
	if err != nil {
		return err
	}
	board, out := *step.board, *step.out
	st, err := b.Initramfs(ctx, board, *snoded, out)
	if err != nil {
		return err
	}
	fmt.Printf("%s: board %s kernel %s, %d modules, %d files, %d bytes raw, %d bytes gzip\n",
		out, board, st.Kernel, st.Modules, st.Files, st.RawBytes, st.GzipBytes)
	return nil
}

func imageKernel(ctx context.Context, args []string) error {
	step := newBoardStep("kernel", "output file for the arm64 kernel Image")
	dtbOut := step.fs.String("dtb-out", "", "output file for the board's device tree (rpi3, rpi4)")
	b, err := step.builder(args)
	if err != nil {
		return err
	}
	board, out := *step.board, *step.out
	kver, err := b.Kernel(ctx, board, out, *dtbOut)
	if err != nil {
		return err
	}
	fmt.Printf("%s: kernel %s\n", out, kver)
	if *dtbOut != "" {
		fmt.Printf("%s: device tree for %s\n", *dtbOut, board)
	}
	return nil
}
