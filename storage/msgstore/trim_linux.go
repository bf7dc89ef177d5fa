package msgstore

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	bolt "go.etcd.io/bbolt"
)

// trim drops this process's page-table mappings of the database file
// (madvise MADV_DONTNEED). bbolt reads through a shared read-only mmap and
// the kernel maps up to 16 neighbouring cached pages on every fault, so
// after a while most of a file written moments ago counts as resident,
// though it is clean page cache. The pages stay cached (the next read is a
// minor fault), but RSS, the status page's figure and the OOM killer's
// score (which counts file-backed RSS) again show the node's own memory.
//
// It runs inside a read transaction: bbolt remaps only under its mmap write
// lock, which waits for readers, so the range cannot move or be reused by
// anything else while we advise it.
func (s *Store) trim() error {
	fi, err := os.Stat(s.path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return s.db.View(func(*bolt.Tx) error {
		ranges, err := mappings(uint64(st.Dev), st.Ino)
		if err != nil {
			return err
		}
		for _, r := range ranges {
			if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, r[0], r[1]-r[0], syscall.MADV_DONTNEED); e != 0 {
				return fmt.Errorf("madvise %x-%x: %w", r[0], r[1], e)
			}
		}
		return nil
	})
}

// mappings lists the address ranges of /proc/self/maps that map inode ino
// of device dev. The device must match too: as PID 1 the binary itself is
// an inode of the initramfs whose number can equal the database's on ext4,
// and advising away the binary's own data segment zeroes its globals.
func mappings(dev, ino uint64) ([][2]uintptr, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMappings(f, dev, ino)
}

// parseMappings reads maps lines. Only read-only shared mappings ("r--s",
// how bbolt maps its file) qualify: MADV_DONTNEED on one of those can only
// drop clean page-cache references, whereas on a private or writable
// mapping it would discard memory. So even a wrong file match could not
// corrupt anything.
func parseMappings(r io.Reader, dev, ino uint64) ([][2]uintptr, error) {
	wantDev := fmt.Sprintf("%x:%x", unix.Major(dev), unix.Minor(dev))
	var out [][2]uintptr
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "r--s" || fields[4] != strconv.FormatUint(ino, 10) || !sameDev(fields[3], wantDev) {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || b <= a {
			continue
		}
		out = append(out, [2]uintptr{uintptr(a), uintptr(b)})
	}
	return out, sc.Err()
}

// sameDev compares a maps "08:01" field with "8:1".
func sameDev(field, want string) bool {
	maj, min, ok := strings.Cut(field, ":")
	if !ok {
		return false
	}
	a, err1 := strconv.ParseUint(maj, 16, 32)
	b, err2 := strconv.ParseUint(min, 16, 32)
	return err1 == nil && err2 == nil && fmt.Sprintf("%x:%x", a, b) == want
}

// statfsAvail reports the bytes available to us on dir's filesystem
// (a variable so tests can simulate a small card).
var statfsAvail = func(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
