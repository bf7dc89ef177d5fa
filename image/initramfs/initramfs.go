// Package initramfs writes the boot archive: a newc cpio (u-root pkg/cpio),
// gzip-compressed as a whole, with fixed inode numbers and mtimes so the
// same inputs give the same bytes.
package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// MTime is the modification time of every record (2024-01-01T00:00:00Z):
// fixed for reproducibility, and late enough that nothing looks "from the
// future" after the clock is set.
const MTime = 1704067200

type entry struct {
	info cpio.Info
	data []byte
}

// Archive collects the files of an initramfs in memory.
type Archive struct {
	entries map[string]*entry
}

// New returns an empty archive.
func New() *Archive { return &Archive{entries: map[string]*entry{}} }

func clean(name string) (string, error) {
	n := strings.TrimPrefix(path.Clean("/"+name), "/")
	if n == "" || n == "." {
		return "", fmt.Errorf("initramfs: bad name %q", name)
	}
	return n, nil
}

func (a *Archive) put(name string, mode uint64, data []byte, rmajor, rminor uint64) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	if old, ok := a.entries[n]; ok && old.info.Mode&cpio.S_IFMT != cpio.S_IFDIR {
		return fmt.Errorf("initramfs: %s added twice", n)
	}
	a.parents(n)
	a.entries[n] = &entry{info: cpio.Info{Name: n, Mode: mode, NLink: 1, MTime: MTime, FileSize: uint64(len(data)), Rmajor: rmajor, Rminor: rminor}, data: data}
	return nil
}

func (a *Archive) parents(n string) {
	for d := path.Dir(n); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := a.entries[d]; !ok {
			a.entries[d] = &entry{info: cpio.Info{Name: d, Mode: cpio.S_IFDIR | 0o755, NLink: 2, MTime: MTime}}
		}
	}
}

// Dir adds a directory.
func (a *Archive) Dir(name string, perm uint64) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	a.parents(n)
	a.entries[n] = &entry{info: cpio.Info{Name: n, Mode: cpio.S_IFDIR | perm, NLink: 2, MTime: MTime}}
	return nil
}

// File adds a regular file.
func (a *Archive) File(name string, data []byte, perm uint64) error {
	return a.put(name, cpio.S_IFREG|perm, data, 0, 0)
}

// Symlink adds a symbolic link.
func (a *Archive) Symlink(name, target string) error {
	return a.put(name, cpio.S_IFLNK|0o777, []byte(target), 0, 0)
}

// CharDev adds a character device node.
func (a *Archive) CharDev(name string, perm, major, minor uint64) error {
	return a.put(name, cpio.S_IFCHR|perm, nil, major, minor)
}

// Has reports whether name is in the archive.
func (a *Archive) Has(name string) bool {
	n, err := clean(name)
	if err != nil {
		return false
	}
	_, ok := a.entries[n]
	return ok
}

// Len is the number of records (directories included).
func (a *Archive) Len() int { return len(a.entries) }

// Records returns the archive's records in write order: sorted by name, so
// every directory precedes what it holds.
func (a *Archive) Records() []cpio.Record {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	recs := make([]cpio.Record, 0, len(names))
	for i, n := range names {
		e := a.entries[n]
		info := e.info
		info.Ino = uint64(i + 1)
		recs = append(recs, cpio.Record{ReaderAt: bytes.NewReader(e.data), Info: info})
	}
	return recs
}

// WriteCPIO writes the uncompressed newc archive and returns its size.
func (a *Archive) WriteCPIO(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	rw := cpio.Newc.Writer(cw)
	for _, r := range a.Records() {
		if err := rw.WriteRecord(r); err != nil {
			return cw.n, fmt.Errorf("initramfs: write %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return cw.n, fmt.Errorf("initramfs: trailer: %w", err)
	}
	return cw.n, nil
}

// WriteGzip writes the archive gzip-compressed and returns the raw
// (uncompressed) and compressed sizes.
func (a *Archive) WriteGzip(w io.Writer) (raw, compressed int64, err error) {
	cw := &countWriter{w: w}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestCompression)
	if err != nil {
		return 0, 0, err
	}
	raw, err = a.WriteCPIO(zw)
	if err != nil {
		return raw, cw.n, err
	}
	if err := zw.Close(); err != nil {
		return raw, cw.n, fmt.Errorf("initramfs: gzip: %w", err)
	}
	return raw, cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Entry is one record of a read-back archive.
type Entry struct {
	Name   string
	Mode   uint64
	Rmajor uint64
	Rminor uint64
	MTime  uint64
	Data   []byte
}

// Read parses a (possibly gzip-compressed) newc archive: for tests and for
// `snodectl image` checks of built images.
func Read(b []byte) ([]Entry, error) {
	if len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("initramfs: gzip: %w", err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("initramfs: gzip: %w", err)
		}
		b = raw
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(b)))
	if err != nil {
		return nil, fmt.Errorf("initramfs: cpio: %w", err)
	}
	out := make([]Entry, 0, len(recs))
	for _, r := range recs {
		data, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			return nil, fmt.Errorf("initramfs: read %s: %w", r.Name, err)
		}
		out = append(out, Entry{Name: r.Name, Mode: r.Mode, Rmajor: r.Rmajor, Rminor: r.Rminor, MTime: r.MTime, Data: data})
	}
	return out, nil
}
