package msgstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The redo log is how a store becomes durable with one sequential write
// and one fdatasync. A synced bbolt commit costs a page write for every
// leaf and branch it touched (the hash and box indexes put each message on
// a random leaf) plus two fdatasyncs, one for the pages and one for the
// meta page; on this machine that is 0.4-1 ms per commit, and on an SD
// card more, and every store of the batch waits for all of it.
//
// So stores are applied to a bbolt write transaction that stays open
// across batches, their records are appended to this log and synced, and
// only then acknowledged. Every checkpointInterval (or sooner: a log of
// checkpointBytes, any write that is not a store, a walk, Close) the
// transaction is committed the normal way, synced, with the sequence
// number of the last record it holds written into the meta bucket by the
// same commit. On open, records past that number are applied again, so a
// power cut between checkpoints loses nothing that was acknowledged, and
// the database file itself is only ever changed by synced bbolt commits.
//
// After a checkpoint the log is overwritten from the start: it stays one
// small preallocated file, and overwriting allocated blocks lets
// fdatasync skip the filesystem journal. Stale records of an earlier
// round are never mistaken for new ones: a reader stops at the first
// record that fails its checksum or does not continue the sequence, and
// every stale record is older than the newest checkpoint.
//
// Layout: a header block (magic, the database's log id), then records
//
//	crc32c(4, of the rest) | payload length(4) | lsn(8) | payload
//
// The log id ties the log to one database file: a log left beside a
// database that was deleted and made anew is ignored, not replayed into it.
const (
	redoMagic      = "snodebox redo log 1\n"
	redoHeaderSize = 512
	redoRecHeader  = 16
	// redoPrealloc is written once when the log is created; a long round
	// may run past it (the file then grows, and later rounds reuse it).
	redoPrealloc = 2 << 20
	// maxRedoPayload bounds one record: a message record is at most
	// storage.MaxMessageBytes plus its header, far below this.
	maxRedoPayload = 1 << 20
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

type redoRecord struct {
	lsn     uint64
	payload []byte
}

type redoLog struct {
	f    *os.File
	path string
	id   uint64
	off  int64  // where the next record goes
	lsn  uint64 // last sequence number handed out
	buf  []byte // records of the batch being formed, not yet written
	// spare is the buffer of the last flight, kept for reuse.
	spare []byte
	// batch are the records in buf; round is what was written since the
	// last checkpoint, in order: a transaction that must be thrown away is
	// rebuilt from it.
	batch, round []redoRecord
	roundBytes   int64
}

// openRedoLog opens (creating if needed) the log for the database with
// log id id, and returns the records it holds.
func openRedoLog(path string, id uint64) (*redoLog, []redoRecord, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open redo log %s: %w", path, err)
	}
	l := &redoLog{f: f, path: path, id: id, off: redoHeaderSize}
	recs, err := l.read()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return l, recs, nil
}

func (l *redoLog) header() []byte {
	h := make([]byte, redoHeaderSize)
	copy(h, redoMagic)
	binary.BigEndian.PutUint64(h[len(redoMagic):], l.id)
	binary.BigEndian.PutUint32(h[len(redoMagic)+8:], crc32.Checksum(h[:len(redoMagic)+8], crc32c))
	return h
}

// read parses the log. A missing or foreign header means the log is new
// (or belongs to another database): it is made anew, empty.
func (l *redoLog) read() ([]redoRecord, error) {
	data, err := io.ReadAll(l.f)
	if err != nil {
		return nil, fmt.Errorf("read redo log %s: %w", l.path, err)
	}
	if len(data) < redoHeaderSize || !bytes.Equal(data[:redoHeaderSize], l.header()) {
		return nil, l.create()
	}
	var recs []redoRecord
	rest := data[redoHeaderSize:]
	for len(rest) >= redoRecHeader {
		n := binary.BigEndian.Uint32(rest[4:])
		lsn := binary.BigEndian.Uint64(rest[8:])
		if n == 0 || n > maxRedoPayload || int(n) > len(rest)-redoRecHeader || lsn == 0 {
			break
		}
		if crc32.Checksum(rest[4:redoRecHeader+n], crc32c) != binary.BigEndian.Uint32(rest) {
			break
		}
		if len(recs) > 0 && lsn != recs[len(recs)-1].lsn+1 {
			break
		}
		recs = append(recs, redoRecord{lsn: lsn, payload: rest[redoRecHeader : redoRecHeader+n]})
		rest = rest[redoRecHeader+n:]
	}
	return recs, nil
}

// create writes the header and preallocates the log with zeros (real
// blocks, not a hole, so later overwrites need no journal commit).
func (l *redoLog) create() error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("create redo log %s: %w", l.path, err)
	}
	block := make([]byte, redoPrealloc)
	copy(block, l.header())
	if _, err := l.f.WriteAt(block, 0); err != nil {
		return fmt.Errorf("create redo log %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("create redo log %s: %w", l.path, err)
	}
	// The log's directory entry must survive a power cut too.
	if d, err := os.Open(filepath.Dir(l.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// add appends one record to the batch being formed.
func (l *redoLog) add(payload []byte) {
	l.lsn++
	start := len(l.buf)
	l.buf = binary.BigEndian.AppendUint32(l.buf, 0)
	l.buf = binary.BigEndian.AppendUint32(l.buf, uint32(len(payload)))
	l.buf = binary.BigEndian.AppendUint64(l.buf, l.lsn)
	l.buf = append(l.buf, payload...)
	binary.BigEndian.PutUint32(l.buf[start:], crc32.Checksum(l.buf[start+4:], crc32c))
	l.batch = append(l.batch, redoRecord{lsn: l.lsn, payload: payload})
}

// pending reports whether records are waiting for flush.
func (l *redoLog) pending() bool { return len(l.buf) > 0 }

// take hands the records formed so far to a flight, with the offset
// they go at; landed must follow before the next take.
func (l *redoLog) take() (buf []byte, recs []redoRecord, off int64) {
	buf, recs = l.buf, l.batch
	l.buf, l.spare, l.batch = l.spare[:0], nil, nil
	return buf, recs, l.off
}

// writeAt writes records at off and waits until they are on the disk. It
// runs on the flight's goroutine and touches only the file.
func (l *redoLog) writeAt(buf []byte, off int64) error {
	if _, err := l.f.WriteAt(buf, off); err != nil {
		return fmt.Errorf("write redo log %s: %w", l.path, err)
	}
	if err := fdatasync(l.f); err != nil {
		return fmt.Errorf("sync redo log %s: %w", l.path, err)
	}
	return nil
}

// landed takes a flight's outcome. Written: the records join the round.
// Not written: they are dropped from the log (the caller makes their
// stores durable another way or fails them), their sequence numbers are
// handed out again, and the next flight is written over the same place.
func (l *redoLog) landed(buf []byte, recs []redoRecord, err error) {
	if err != nil {
		if len(recs) > 0 {
			l.lsn = recs[0].lsn - 1
		}
	} else {
		l.off += int64(len(buf))
		l.roundBytes += int64(len(buf))
		l.round = append(l.round, recs...)
	}
	l.spare = buf[:0]
}

// flush writes the records formed so far and waits for them: take,
// writeAt and landed in one, for callers that have nothing to overlap.
func (l *redoLog) flush() error {
	buf, recs, off := l.take()
	err := l.writeAt(buf, off)
	l.landed(buf, recs, err)
	return err
}

// checkpointed starts a new round: everything logged so far is in the
// database file.
func (l *redoLog) checkpointed() {
	l.buf, l.batch, l.round = l.buf[:0], nil, nil
	l.roundBytes = 0
	l.off = redoHeaderSize
}

func (l *redoLog) close() error { return l.f.Close() }

// fdatasync is the one sync a log append needs: the file's size and
// blocks are unchanged by an overwrite, so its metadata need not be
// written.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
