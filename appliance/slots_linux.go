package appliance

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"aead.dev/minisign"
	"golang.org/x/sys/unix"

	"github.com/snodebox/snodebox/appliance/config"
	"github.com/snodebox/snodebox/appliance/slots"
	"github.com/snodebox/snodebox/appliance/update"
	"github.com/snodebox/snodebox/image/release"
	"github.com/snodebox/snodebox/image/slot"
)

// partSlots reads the slots of the disk the boot partition is on: slot A
// and B are its partitions 2 and 3 (image/slot), mounted read-only for the
// moment it takes to read a manifest.
type partSlots struct {
	roots blockRoots
	disk  string // vda, mmcblk0
}

func (p partSlots) dev(s string) (string, error) {
	n := slot.Partition(s)
	for _, part := range p.roots.partitions() {
		if part.Disk == p.disk && part.Number == n {
			return p.roots.dev(part.Name), nil
		}
	}
	return "", fmt.Errorf("slot %s: %s has no partition %d", s, p.disk, n)
}

func (p partSlots) Manifest(s string) (slot.Manifest, error) {
	dev, err := p.dev(s)
	if err != nil {
		return slot.Manifest{}, err
	}
	mnt := filepath.Join("/run/slots", s)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return slot.Manifest{}, err
	}
	if err := unix.Mount(dev, mnt, "vfat", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "umask=0022"); err != nil {
		return slot.Manifest{}, fmt.Errorf("slot %s (%s) holds no filesystem: %w", s, dev, err)
	}
	defer unix.Unmount(mnt, 0)
	return slot.ReadManifest(mnt)
}

// setupSlots starts the slot agent when U-Boot's script booted us (the
// kernel+initramfs path of the fast QEMU tests has no slots).
func (rt *app) setupSlots() {
	d := rt.device
	if d.cmdline.Slot == "" || d.bootDev == "" {
		return
	}
	window := rt.cfg.Update.HealthWindow
	rt.slots = &slots.Agent{
		Booted:  d.cmdline.Slot,
		Boot:    slots.DirBoot{Dir: BootMount, Remount: rt.remountBoot},
		Slots:   partSlots{roots: systemBlock, disk: d.bootPart.Disk},
		DataDir: DataMount,
		Window:  durationOf(window),
		Healthy: func() (bool, []string) {
			h := rt.monitor.Last()
			return h.Healthy, h.Reasons
		},
		Reboot: func(reason string) {
			markers.mark("slot gives up: %s", reason)
			rt.sigTarget(unix.LINUX_REBOOT_CMD_RESTART)
		},
		Log: rt.log.With("svc", "slots"),
	}
	if err := rt.slots.Start(); err != nil {
		rt.log.Error("slots", "err", err)
		rt.slots = nil
		return
	}
	st := rt.slots.Status()
	markers.mark("slot booted=%s version=%s other=%s/%s", st.BootedSlot, st.Version, st.OtherSlot.State, orNone(st.OtherSlot.Version))
	if st.Rollback != "" {
		markers.mark("rollback from=%s reason=%s", st.LastSwitch.From, st.Rollback)
	}
}

func durationOf(d config.Duration) time.Duration { return time.Duration(d) }

// ReadFile reads one file of slot s (mounted read-only for the moment).
func (p partSlots) ReadFile(s, name string) ([]byte, error) {
	dev, err := p.dev(s)
	if err != nil {
		return nil, err
	}
	mnt := filepath.Join("/run/slots", s)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount(dev, mnt, "vfat", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "umask=0022"); err != nil {
		return nil, fmt.Errorf("slot %s (%s): %w", s, dev, err)
	}
	defer unix.Unmount(mnt, 0)
	return os.ReadFile(filepath.Join(mnt, name))
}

// slotDevice is a slot partition opened for the update agent.
type slotDevice struct {
	*os.File
	size int64
}

func (d slotDevice) Size() int64 { return d.size }

func (p partSlots) Open(s string) (update.SlotDevice, error) {
	dev, err := p.dev(s)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, err
	}
	return slotDevice{File: f, size: size}, nil
}

// setupUpdates starts the update agent beside the slot agent: the keys it
// trusts are the running slot's (covered by its manifest) plus
// snodebox.toml's.
func (rt *app) setupUpdates() {
	if rt.slots == nil {
		return
	}
	// The board a release must be for is the one the running system was
	// built for.
	board := rt.slots.Self().Board
	ps := rt.slots.Slots.(partSlots)
	booted := rt.slots.Booted
	readKeys := func(file string, extra []string) []minisign.PublicKey {
		var keys []minisign.PublicKey
		if data, err := ps.ReadFile(booted, file); err == nil {
			k, err := release.ParsePublicKeys(data)
			if err != nil {
				rt.log.Warn("slot keys", "file", file, "err", err)
			}
			keys = append(keys, k...)
		}
		for _, line := range extra {
			k, _ := release.ParsePublicKeys([]byte(line))
			keys = append(keys, k...)
		}
		return keys
	}
	relKeys := readKeys(release.SlotReleaseKeys, rt.cfg.Update.ReleaseKeys)
	adminKeys := readKeys(release.SlotAdminKeys, rt.cfg.Update.AdminKeys)
	var lastStores int64 = -1
	var quietSince time.Time
	rt.updater = &update.Agent{
		Board:       board,
		Slots:       rt.slots,
		OpenSlot:    ps.Open,
		TrustedKeys: func() []minisign.PublicKey { return relKeys },
		AdminKeys:   func() []minisign.PublicKey { return adminKeys },
		Channel:     rt.cfg.Update.Channel,
		Interval:    time.Duration(rt.cfg.Update.Interval),
		Inhibit:     rt.cfg.Update.Inhibit,
		DataDir:     DataMount,
		FirstCheck:  10 * time.Second,
		// Quiet: no message stored for 5 s.
		Quiet: func() bool {
			n, _ := rt.current()
			if n == nil {
				return true
			}
			s := n.Store.Stats().Stores
			if s != lastStores {
				lastStores, quietSince = s, time.Now()
				return false
			}
			return time.Since(quietSince) > 5*time.Second
		},
		Reboot: func(reason string) {
			markers.mark("update reboot: %s", reason)
			rt.sigTarget(unix.LINUX_REBOOT_CMD_RESTART)
		},
		Log: rt.log.With("svc", "update"),
	}
	rt.updater.Start()
	rt.nodeCfg.Routes = map[string]http.Handler{"POST " + release.PushPath: rt.updater.PushHandler()}
	rt.log.Info("update agent", "channel", rt.cfg.Update.Channel, "release_keys", len(relKeys), "admin_keys", len(adminKeys), "inhibit", rt.cfg.Update.Inhibit)
}
