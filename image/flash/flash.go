// Package flash writes an image to an SD card (or any block device or
// file) and reads it back to verify it, refusing targets that are probably
// not the card the user meant: a mounted disk, a fixed disk, one bigger
// than any SD card.
package flash

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// MaxSize is the largest target written without --force: SD cards top out
// at 2 TB (SDXC), and a bigger disk is far more likely a PC's own drive.
const MaxSize = 2_000_000_000_000

// Options tune a flash.
type Options struct {
	Force    bool      // skip the removable and size checks (never the mounted check)
	Progress io.Writer // progress lines ("" when nil)
	// Roots for looking up the target (tests point them at fakes).
	SysBlock   string // /sys/class/block
	Mountinfo  string // /proc/self/mountinfo
	ChunkBytes int    // write size (default 4 MiB)
}

func (o *Options) defaults() {
	if o.SysBlock == "" {
		o.SysBlock = "/sys/class/block"
	}
	if o.Mountinfo == "" {
		o.Mountinfo = "/proc/self/mountinfo"
	}
	if o.ChunkBytes == 0 {
		o.ChunkBytes = 4 << 20
	}
}

// Result is what a flash did.
type Result struct {
	Bytes   int64
	SHA256  string
	Write   time.Duration
	Verify  time.Duration
	Device  bool // the target is a block device
	Refused string
}

// Check says why target must not be written, or nil. Block devices are
// checked for mounts (of the disk or any of its partitions), removability
// and size; a regular file is always acceptable.
func Check(target string, o Options) error {
	o.defaults()
	fi, err := os.Stat(target)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			// A new file is fine; a missing device node is a typo.
			if abs, _ := filepath.Abs(target); strings.HasPrefix(abs, "/dev/") {
				return fmt.Errorf("%s does not exist (is the card inserted?)", target)
			}
			return nil
		}
		return err
	}
	if fi.Mode().IsRegular() {
		return nil
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return fmt.Errorf("%s is neither a block device nor a regular file", target)
	}
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		return fmt.Errorf("%s: %w", target, err)
	}
	name, err := blockName(o.SysBlock, unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	if err != nil {
		return err
	}
	disk := name
	if _, err := os.Stat(filepath.Join(o.SysBlock, name, "partition")); err == nil {
		return fmt.Errorf("%s is a partition; give the whole card (the disk it belongs to)", target)
	}
	mounted, err := mountedParts(o.Mountinfo, o.SysBlock, disk)
	if err != nil {
		return err
	}
	if len(mounted) > 0 {
		return fmt.Errorf("%s is in use: %s mounted; unmount it first (flashing a mounted disk corrupts it)", target, strings.Join(mounted, ", "))
	}
	size, err := readInt(filepath.Join(o.SysBlock, disk, "size"))
	if err != nil {
		return fmt.Errorf("%s: size: %w", target, err)
	}
	bytes := size * 512
	if o.Force {
		return nil
	}
	removable, _ := readInt(filepath.Join(o.SysBlock, disk, "removable"))
	// A card reader on USB shows removable=1; an SD slot (mmcblk) too on
	// most hosts, and mmc devices are cards whatever the flag says.
	if removable != 1 && !strings.HasPrefix(disk, "mmcblk") {
		return fmt.Errorf("%s is not a removable disk (an SD card reader shows as one); --force if you are sure", target)
	}
	if bytes > MaxSize {
		return fmt.Errorf("%s is %.1f TB, bigger than any SD card; --force if you are sure", target, float64(bytes)/1e12)
	}
	return nil
}

// blockName finds the sysfs name of a block device number.
func blockName(sysBlock string, major, minor uint32) (string, error) {
	want := fmt.Sprintf("%d:%d", major, minor)
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", fmt.Errorf("list block devices: %w", err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "dev"))
		if err == nil && strings.TrimSpace(string(b)) == want {
			return e.Name(), nil
		}
	}
	return "", fmt.Errorf("block device %s not in %s", want, sysBlock)
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// mountedParts lists the mounts whose source is disk or one of its
// partitions, found by device number in mountinfo (so a loop device
// mounted under any name is caught).
func mountedParts(mountinfo, sysBlock, disk string) ([]string, error) {
	devs := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(sysBlock, disk, "dev")); err == nil {
		devs[strings.TrimSpace(string(b))] = disk
	}
	ents, _ := os.ReadDir(filepath.Join(sysBlock, disk))
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(sysBlock, disk, e.Name(), "dev")); err == nil {
			devs[strings.TrimSpace(string(b))] = e.Name()
		}
	}
	f, err := os.Open(mountinfo)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint …
		fl := strings.Fields(sc.Text())
		if len(fl) < 5 {
			continue
		}
		if name, ok := devs[fl[2]]; ok {
			out = append(out, fmt.Sprintf("%s on %s", name, fl[4]))
		}
	}
	return out, sc.Err()
}

// Write copies image to target after Check, syncs, then reads back and
// compares SHA-256.
func Write(ctx context.Context, image, target string, o Options) (Result, error) {
	o.defaults()
	var r Result
	if err := Check(target, o); err != nil {
		r.Refused = err.Error()
		return r, fmt.Errorf("refusing to flash %s: %w", target, err)
	}
	in, err := os.Open(image)
	if err != nil {
		return r, fmt.Errorf("image: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return r, err
	}
	total := fi.Size()
	tfi, _ := os.Stat(target)
	r.Device = tfi != nil && !tfi.Mode().IsRegular()
	flags := os.O_WRONLY | os.O_CREATE
	if r.Device {
		// Without O_CREAT, O_EXCL on a block device is an exclusive open:
		// the kernel refuses while anything holds the disk.
		flags = os.O_WRONLY | unix.O_EXCL
	}
	out, err := os.OpenFile(target, flags, 0o644)
	if err != nil {
		return r, fmt.Errorf("open %s: %w", target, err)
	}
	if r.Device {
		if sz, err := deviceSize(out); err == nil && sz < total {
			out.Close()
			return r, fmt.Errorf("%s holds %d MB, the image is %d MB", target, sz/1e6, total/1e6)
		}
	}
	start := time.Now()
	h := sha256.New()
	p := newProgress(o.Progress, "write", total)
	buf := make([]byte, o.ChunkBytes)
	var off int64
	for off < total {
		if err := ctx.Err(); err != nil {
			out.Close()
			return r, err
		}
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			h.Write(buf[:n])
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				out.Close()
				return r, fmt.Errorf("write %s at %d: %w", target, off, werr)
			}
			off += int64(n)
			p.update(off)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			out.Close()
			return r, fmt.Errorf("read image: %w", err)
		}
	}
	if !r.Device {
		if err := out.Truncate(off); err != nil {
			out.Close()
			return r, fmt.Errorf("truncate %s: %w", target, err)
		}
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return r, fmt.Errorf("sync %s: %w", target, err)
	}
	if err := out.Close(); err != nil {
		return r, err
	}
	p.done()
	r.Bytes, r.Write, r.SHA256 = off, time.Since(start), fmt.Sprintf("%x", h.Sum(nil))
	start = time.Now()
	if err := verify(ctx, target, r.Device, total, h.Sum(nil), o, buf); err != nil {
		return r, err
	}
	r.Verify = time.Since(start)
	return r, nil
}

func deviceSize(f *os.File) (int64, error) {
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	_, err = f.Seek(0, io.SeekStart)
	return n, err
}

// verify reads the first total bytes of target back; on a block device
// the page cache is dropped first, so the card's own contents are read.
func verify(ctx context.Context, target string, device bool, total int64, want []byte, o Options, buf []byte) error {
	f, err := os.Open(target)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	if device {
		unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
	}
	unix.Fadvise(int(f.Fd()), 0, total, unix.FADV_DONTNEED)
	h := sha256.New()
	p := newProgress(o.Progress, "verify", total)
	var off int64
	for off < total {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int64(len(buf))
		if total-off < n {
			n = total - off
		}
		m, err := f.ReadAt(buf[:n], off)
		h.Write(buf[:m])
		off += int64(m)
		p.update(off)
		if err != nil && off < total {
			return fmt.Errorf("verify: read %s at %d: %w", target, off, err)
		}
	}
	p.done()
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("verify: %s reads back sha256 %x, wrote %x: the card may be failing or fake", target, got, want)
	}
	return nil
}

type progress struct {
	w     io.Writer
	what  string
	total int64
	last  time.Time
	start time.Time
}

func newProgress(w io.Writer, what string, total int64) *progress {
	return &progress{w: w, what: what, total: total, start: time.Now()}
}

func (p *progress) update(n int64) {
	if p.w == nil || time.Since(p.last) < 500*time.Millisecond && n < p.total {
		return
	}
	p.last = time.Now()
	pct := 100 * float64(n) / float64(p.total)
	width := 30
	bar := strings.Repeat("#", int(pct/100*float64(width))) + strings.Repeat(".", width-int(pct/100*float64(width)))
	rate := float64(n) / 1e6 / time.Since(p.start).Seconds()
	fmt.Fprintf(p.w, "\rflash: %-6s [%s] %5.1f%% %d/%d MB %.1f MB/s", p.what, bar, pct, n/1e6, p.total/1e6, rate)
}

func (p *progress) done() {
	if p.w != nil {
		p.update(p.total)
		fmt.Fprintln(p.w)
	}
}
