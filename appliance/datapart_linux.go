package appliance

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snodebox/snodebox/image/mbr"
)

// DataMount is where the data partition is mounted on the device.
const DataMount = "/data"

// DataMountOptions: noatime (no write per read), commit=60 (ext4 journals
// every 60 s instead of 5: far fewer small flash writes; bbolt fsyncs what
// must be durable, so only the time of metadata-only changes is at risk),
// nodev/nosuid/noexec (nothing on the data partition is code).
const (
	DataMountFlags = unix.MS_NOATIME | unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC
	DataMountData  = "commit=60"
)

// growSlack: the data partition is the last one on the disk (contract (g));
// on first boot, and whenever the disk got bigger, its MBR entry is made to
// end at the end of the disk, unless less than 1 MiB (2048 sectors, the
// alignment slack partitioners leave) would be gained.
const growSlack = 2048

// Paths of the e2fsprogs tools in the initramfs (contract (e)).
var (
	mke2fsPath    = "/sbin/mke2fs"
	resize2fsPath = "/sbin/resize2fs"
	e2fsckPath    = "/sbin/e2fsck"
)

// mke2fsArgs formats dev as the data filesystem: 1% reserved blocks (the
// node is the only user), no discard pass and lazy inode-table and journal
// initialisation (the kernel finishes them in the background; the journal
// is checksummed, so an unzeroed one cannot be replayed by mistake). A full
// discard and zeroing took 94 s for 512 MB on QEMU's emulated SD card.
func mke2fsArgs(dev string) []string {
	return []string{"-t", "ext4", "-L", DataLabel, "-F", "-q", "-m", "1",
		"-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", dev}
}

// dataState is the outcome of preparing the data partition.
type dataState struct {
	Dev       string // /dev/vda1
	Disk      string // vda
	Mounted   bool   // the real partition (false: tmpfs fallback)
	Formatted bool
	Grown     bool
	Err       string // why not mounted
}

// prepareData finds, grows, formats if blank and mounts the data partition
// on mountpoint. On failure it mounts a tmpfs there so the node still runs
// (degraded) and reports why.
func prepareData(spec, mountpoint string, roots blockRoots, rp *reaper, log *slog.Logger) dataState {
	var st dataState
	if err := os.MkdirAll(mountpoint, 0o755); err != nil {
		st.Err = err.Error()
		return st
	}
	err := func() error {
		var p partition
		if err := waitFor(15*time.Second, func() (err error) { p, err = roots.findData(spec); return err }); err != nil {
			return err
		}
		st.Dev, st.Disk = roots.dev(p.Name), p.Disk
		log.Info("data partition", "dev", st.Dev, "start", p.Start, "sectors", p.Sectors)

		// Grow the partition first: formatting the final size is faster
		// than formatting small and resizing.
		if total, err := roots.diskSectors(p.Disk); err == nil {
			grown, ns, err := mbr.GrowLastOnDisk(roots.dev(p.Disk), uint32(p.Start), total, growSlack)
			if err != nil {
				log.Warn("grow data partition", "err", err)
			} else if grown {
				if err := tellKernel(roots.dev(p.Disk), p, uint64(ns)); err != nil {
					log.Warn("kernel did not take the new partition size; it applies after reboot", "err", err)
				} else {
					st.Grown = true
					log.Info("data partition grown", "sectors", ns, "bytes", uint64(ns)*mbr.SectorSize)
				}
			}
		}

		info, hasFS, err := probeExt(st.Dev)
		if err != nil {
			return err
		}
		if !hasFS {
			log.Info("no filesystem on data partition; formatting", "dev", st.Dev)
			if _, err := rp.output(mke2fsPath, mke2fsArgs(st.Dev)...); err != nil {
				return fmt.Errorf("format: %w", err)
			}
			st.Formatted = true
		}
		if err := unix.Mount(st.Dev, mountpoint, "ext4", DataMountFlags, DataMountData); err != nil {
			// A dirty filesystem the journal cannot fix: check, then retry once.
			log.Warn("mount data failed; checking filesystem", "dev", st.Dev, "err", err)
			if out, ferr := rp.output(e2fsckPath, "-p", st.Dev); ferr != nil {
				log.Warn("e2fsck", "err", ferr, "out", string(out))
			}
			if err := unix.Mount(st.Dev, mountpoint, "ext4", DataMountFlags, DataMountData); err != nil {
				return fmt.Errorf("mount %s: %w", st.Dev, err)
			}
		}
		st.Mounted = true
		// Grow the filesystem online when the partition is bigger than it
		// (just grown, or a grow was interrupted by a power cut last time).
		if info, _, err = probeExt(st.Dev); err == nil {
			partBytes, err := readUint(filepath.Join(roots.SysBlock, p.Name, "size"))
			if err == nil && info.Bytes+(1<<20) < partBytes*mbr.SectorSize {
				if _, err := rp.output(resize2fsPath, st.Dev); err != nil {
					log.Warn("grow data filesystem", "err", err)
				} else {
					st.Grown = true
					log.Info("data filesystem grown", "from", info.Bytes, "to", partBytes*mbr.SectorSize)
				}
			}
		}
		return nil
	}()
	if err != nil {
		st.Err = err.Error()
		log.Error("data partition unusable; running from RAM", "err", err)
		if merr := unix.Mount("tmpfs", mountpoint, "tmpfs", unix.MS_NODEV|unix.MS_NOSUID, "mode=0755,size=50%"); merr != nil && !errors.Is(merr, unix.EBUSY) {
			log.Error("mount tmpfs data", "err", merr)
		}
	}
	return st
}

// blkpgPartition and blkpgIoctlArg mirror <linux/blkpg.h>.
type blkpgPartition struct {
	Start   int64
	Length  int64
	Pno     int32
	Devname [64]byte
	Volname [64]byte
	_       [4]byte
}

type blkpgIoctlArg struct {
	Op      int32
	Flags   int32
	Datalen int32
	_       int32
	Data    uintptr
}

const (
	blkpgIoctl           = 0x1269
	blkpgResizePartition = 3
)

// tellKernel makes the kernel see the new partition size: BLKPG resize
// works while other partitions of the disk are in use (the boot partition);
// BLKRRPART (full re-read) is the fallback.
func tellKernel(disk string, p partition, newSectors uint64) error {
	f, err := os.OpenFile(disk, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	bp := blkpgPartition{Start: int64(p.Start) * mbr.SectorSize, Length: int64(newSectors) * mbr.SectorSize, Pno: int32(p.Number)}
	arg := blkpgIoctlArg{Op: blkpgResizePartition, Datalen: int32(unsafe.Sizeof(bp)), Data: uintptr(unsafe.Pointer(&bp))}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), blkpgIoctl, uintptr(unsafe.Pointer(&arg)))
	runtime.KeepAlive(&bp)
	if errno == 0 {
		return nil
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err != nil {
		return fmt.Errorf("BLKPG resize: %v; BLKRRPART: %w", errno, err)
	}
	return nil
}
