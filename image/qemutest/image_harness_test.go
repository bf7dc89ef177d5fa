package qemutest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/node/nodetest"
	"github.com/snodebox/snodebox/appliance/slots"
	"github.com/snodebox/snodebox/image/assemble"
	"github.com/snodebox/snodebox/image/initramfs"
	"github.com/snodebox/snodebox/image/qemu"
	"github.com/snodebox/snodebox/image/sdcard"
	"github.com/snodebox/snodebox/image/slot"
)

// images are built once per test run: the qemu-arm64 card, and slot images
// for the rollback cases.
type images struct {
	base  string // the card, slot A = version v1
	slots map[string]string
	stats assemble.ImageStats
}

var (
	imagesOnce sync.Once
	imagesVal  *images
	imagesErr  error
)

func (e *env) images(tb testing.TB) *images {
	tb.Helper()
	imagesOnce.Do(func() { imagesVal, imagesErr = e.buildImages() })
	if imagesErr != nil {
		tb.Fatalf("build test images: %v", imagesErr)
	}
	return imagesVal
}

func (e *env) buildImages() (*images, error) {
	ctx := context.Background()
	dir := filepath.Join(e.repo, "build", "qemutest", "image")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	im := &images{base: filepath.Join(dir, "base.img"), slots: map[string]string{}}
	b := *e.b
	b.Version = "v1"
	var err error
	if im.stats, err = b.Image(ctx, assemble.ImageOptions{Board: "qemu-arm64", Out: im.base, Snoded: e.snoded}); err != nil {
		return nil, err
	}
	// Slot images for B. Each is a real slot (kernel, initramfs, manifest)
	// with one thing broken the way a bad release would be.
	b.Version = "v2"
	mk := func(name, bootArgs string, breakIt func(slotDir string) error) error {
		sd := filepath.Join(dir, "slot-"+name)
		os.RemoveAll(sd)
		if _, _, err := b.SlotTree(ctx, assemble.SlotSpec{Board: "qemu-arm64", Snoded: e.snoded, BootArgs: bootArgs}, sd); err != nil {
			return err
		}
		if breakIt != nil {
			if err := breakIt(sd); err != nil {
				return err
			}
			m, err := slot.NewManifest(sd, "v2-"+name, "qemu-arm64", im.stats.Kernel)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(sd, slot.ManifestFile), m.Marshal(), 0o644); err != nil {
				return err
			}
		}
		img := filepath.Join(dir, "slot-"+name+".img")
		if err := sdcard.MakeSlotImage(ctx, img, 0, sd, name, time.Time{}); err != nil {
			return err
		}
		im.slots[name] = img
		return nil
	}
	if err := mk("good", "", nil); err != nil {
		return nil, err
	}
	// The kernel finds no initramfs it can unpack and no root device: it
	// panics, and panic=5 reboots.
	if err := mk("panic", "", func(sd string) error {
		return os.WriteFile(filepath.Join(sd, slot.InitrdFile), bytes.Repeat([]byte("not a cpio archive\n"), 4096), 0o644)
	}); err != nil {
		return nil, err
	}
	// An init that exits at once.
	if err := mk("exit", "", func(sd string) error { return e.exitInitramfs(filepath.Join(sd, slot.InitrdFile)) }); err != nil {
		return nil, err
	}
	// A real snoded that never gets into a swarm: its registry does not
	// answer. Its health window is the shortest allowed.
	if err := mk("unhealthy", "snode.registry=devnet:http://127.0.0.1:9 snode.health_window=20s", func(string) error { return nil }); err != nil {
		return nil, err
	}
	return im, nil
}

func (e *env) exitInitramfs(out string) error {
	bin := filepath.Join(filepath.Dir(out), "exitinit")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.Command(gobin, "build", "-o", bin, "./image/qemutest/testdata/exitinit")
	cmd.Dir = e.repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build exitinit: %w\n%s", err, o)
	}
	data, err := os.ReadFile(bin)
	os.Remove(bin)
	if err != nil {
		return err
	}
	a := initramfs.New()
	a.File("init", data, 0o755)
	a.CharDev("dev/console", 0o600, 5, 1)
	a.CharDev("dev/null", 0o666, 1, 3)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, _, err := a.WriteGzip(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startImage boots the card kept in state through U-Boot (a copy of
// image made on first use), with the RPC and status page forwarded.
func (e *env) startImage(tb testing.TB, state, image, name string) *boot {
	tb.Helper()
	return e.startImageWith(tb, state, image, name, "")
}

// startImageWith also puts a release server (host loopback) where the guest
// finds it (qemu.UpdateGuestAddr).
func (e *env) startImageWith(tb testing.TB, state, image, name, updateServer string) *boot {
	tb.Helper()
	ib, err := qemu.PrepareImage(context.Background(), "virt", image, state, 512<<20, io.Discard)
	if err != nil {
		tb.Fatalf("prepare image: %v", err)
	}
	bt := &boot{tb: tb, rpcPort: nodetest.FreePort(tb), statusPort: nodetest.FreePort(tb), name: name, disk: ib.Disk}
	cf, err := os.Create(filepath.Join(state, name+"-console.log"))
	if err != nil {
		tb.Fatal(err)
	}
	bt.console = cf
	bt.m, err = qemu.Start(context.Background(), qemu.Config{
		Machine: "virt", Firmware: ib.Firmware, Disk: ib.Disk, StateDir: state,
		Forwards: []qemu.Forward{
			{HostAddr: "127.0.0.1", HostPort: bt.rpcPort, GuestPort: 22021},
			{HostAddr: "127.0.0.1", HostPort: bt.statusPort, GuestPort: 80},
		},
		Console:      cf,
		UpdateServer: updateServer,
	})
	if err != nil {
		tb.Fatalf("start image: %v", err)
	}
	tb.Cleanup(func() {
		bt.m.Kill()
		<-bt.m.Done()
		cf.Close()
	})
	return bt
}

// updateStatus is /status.json's "update" object.
func (bt *boot) update() slots.Status {
	bt.tb.Helper()
	_, body := bt.status()
	var s struct {
		Update *slots.Status `json:"update"`
	}
	if err := json.Unmarshal(body, &s); err != nil || s.Update == nil {
		bt.fail("status.json has no update object (%v): %s", err, body)
	}
	return *s.Update
}

// waitUpdate polls the update object until cond holds.
func (bt *boot) waitUpdate(guard time.Duration, what string, cond func(slots.Status) bool) slots.Status {
	bt.tb.Helper()
	deadline := time.Now().Add(guard)
	var last slots.Status
	for time.Now().Before(deadline) {
		last = bt.update()
		if cond(last) {
			return last
		}
		time.Sleep(time.Second)
	}
	bt.fail("update object never showed %s; last %+v", what, last)
	return last
}

// cardState reads the kept disk's boot state (QEMU stopped).
func cardState(tb testing.TB, disk string) slot.BootState {
	tb.Helper()
	c, err := sdcard.Open(disk)
	if err != nil {
		tb.Fatal(err)
	}
	bs, err := c.BootState(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return bs
}
