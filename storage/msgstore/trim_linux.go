package msgstore

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

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
		ranges, err := mappings(st.Ino)
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

// mappings lists the address ranges of /proc/self/maps that map inode ino.
func mappings(ino uint64) ([][2]uintptr, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][2]uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[4] != strconv.FormatUint(ino, 10) {
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

// statfsAvail reports the bytes available to us on dir's filesystem
// (a variable so tests can simulate a small card).
var statfsAvail = func(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
