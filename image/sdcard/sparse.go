package sdcard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Sparse copies. A card image is mostly empty: 241 MiB of which a few
// dozen hold kernels and initramfs, the rest free FAT clusters and ext4's
// lazily initialised tables. Written block for block, every image, slot
// copy and test disk costs its full size on the host's disk (the test
// suite once held 3.3 GiB of them and ran a CI machine out of space), so
// runs of zeros become holes: they read back as zeros, cost nothing, and
// `flash` still writes every byte to the card.

// sparseBlock is the granularity zeros are looked for at: a multiple of
// every filesystem block size a host is likely to use.
const sparseBlock = 64 << 10

var zeroBlock [sparseBlock]byte

// writeSparse copies r to f from offset off, leaving holes where r has a
// whole block of zeros. If fresh, f is known to read as zeros over the
// range already (just created or truncated) and zero blocks are skipped;
// otherwise their range is punched out of f, or written as zeros where
// the filesystem cannot punch. It returns the bytes copied.
func writeSparse(f *os.File, off int64, r io.Reader, fresh bool) (int64, error) {
	buf := make([]byte, sparseBlock)
	var n int64
	canPunch := !fresh
	for {
		m, err := io.ReadFull(r, buf)
		if m > 0 {
			chunk := buf[:m]
			write := !bytes.Equal(chunk, zeroBlock[:m])
			if !write && !fresh {
				// Zeros over old data: a hole, or written zeros where
				// the filesystem cannot punch one.
				write = !canPunch
				if canPunch {
					perr := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off+n, int64(m))
					if perr != nil && !errors.Is(perr, unix.EOPNOTSUPP) && !errors.Is(perr, unix.ENOSYS) {
						return n, fmt.Errorf("punch hole at %d: %w", off+n, perr)
					}
					canPunch, write = perr == nil, perr != nil
				}
			}
			if write {
				if _, werr := f.WriteAt(chunk, off+n); werr != nil {
					return n, werr
				}
			}
			n += int64(m)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// copyToNew copies r into f, a file just created, leaving holes for zeros;
// the size is set at the end, so a trailing run of zeros still counts.
func copyToNew(f *os.File, r io.Reader) error {
	n, err := writeSparse(f, 0, r, true)
	if err != nil {
		return err
	}
	return f.Truncate(n)
}
