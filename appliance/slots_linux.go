package appliance

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snodebox/snodebox/appliance/config"
	"github.com/snodebox/snodebox/appliance/slots"
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
