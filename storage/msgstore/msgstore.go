// Package msgstore is the bbolt message engine behind storage.Store, built
// for SD cards: a store is durable once its record is synced in a redo log
// (one sequential write shared by every store that arrived meanwhile, see
// redolog.go and commit.go), bbolt takes the stores in checkpoints,
// indexes serve retrieval in insertion order and expiry pruning, and a
// size cap fails stores cleanly.
//
// Layout (all integers big-endian so byte order is numeric order):
//
//	msg  seq(8)                                 → ts | expiry | owner(33) | ns | hash(43) | data
//	hashidx prefix(8) | seq                     → (empty)
//	box  pos(8) | owner(33) | ns^0x8000 | seq   → (empty)
//	exp  expiry^1<<63 | seq                     → (empty)
//	rev  owner(33)                              → [at(8) | len(2) | token]… oldest first
//	meta "version", "seq", "messages", "accounts" → u64
//
// seq is a global insertion counter: it orders a namespace's messages like
// the reference server's SQLite row id. Keying the bulky message records by
// seq makes every insert an append to the right edge of the tree: pages are
// packed full, a commit rewrites only the last few data pages instead of one
// random page per message (less flash wear), and inserts never read data
// pages back. The random-order lookups by hash go through the small hash
// index instead. Its key is the first 8 bytes the hash encodes (the
// lookup checks the full hash in the record), not the 43-character hash:
// an index half the size touches half the pages, and under a store load
// every leaf of a random-order index is touched between two checkpoints,
// so its size is what the node keeps resident.
//
// The box key starts with the owner's swarm position (spec §6.1), so one
// index serves both retrieval (prefix pos|owner|ns, in insertion order) and
// the ring-range walks of swarm handover (ForEach, DropRange).
package msgstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/snodebox/snodebox/storage"
)

// layoutVersion is the on-disk layout described in the package comment.
// Version 1 keyed the hash index by the whole hash (bucket "hash", hash →
// seq); Open migrates it (migrate.go).
const layoutVersion = 2

// DefaultCapBytes fits a 32 GB card with room for the OS and slack.
const DefaultCapBytes int64 = 24 << 30

// Options tune the engine.
type Options struct {
	CapBytes int64 // 0 = DefaultCapBytes

	// boltBatch routes writes through bbolt's DB.Batch instead of the
	// engine's commit queue; only the comparison benchmark sets it.
	boltBatch bool
	// noCheckpoints leaves stores in the redo log and the open
	// transaction until a write that is not a store (or Close): the crash
	// tests use it to catch the database file with acknowledged stores
	// only in the log.
	noCheckpoints bool
	// migrateChunk is how many messages one migration transaction
	// indexes; 0 = migrateChunkDefault. Tests make it small.
	migrateChunk int
}

const (
	// pruneChunk bounds the deletions of one pruning or range-drop
	// transaction so concurrent stores never wait behind a long one.
	pruneChunk = 1000
	// maxQueueOps and maxQueueBytes bound one group commit: enough to
	// amortise the fsync, small enough that one commit stays short.
	maxQueueOps   = 512
	maxQueueBytes = 16 << 20
	// batchChunk is how many messages of a StoreBatch go in one operation.
	batchChunk = 500
	// walkBatch and walkBytes bound what ForEach reads per read
	// transaction (callbacks run outside it so a slow peer never pins old
	// pages); the byte bound keeps a batch of 76 KB messages small.
	walkBatch = 256
	walkBytes = 1 << 20
	// perMessageOverhead estimates the index entries and page slack one
	// message adds beyond its data, for the size cap check.
	perMessageOverhead = 512
)

var (
	bktMsg  = []byte("msg")
	bktHash = []byte("hashidx")
	bktBox  = []byte("box")
	bktExp  = []byte("exp")
	bktRev  = []byte("rev")
	bktMeta = []byte("meta")

	keyVersion  = []byte("version")
	keySeq      = []byte("seq")
	keyMessages = []byte("messages")
	keyAccounts = []byte("accounts")
	// keyLogged is the sequence number of the last redo record the
	// database holds; keyLogID ties the redo log to this file.
	keyLogged = []byte("logged")
	keyLogID  = []byte("logid")
)

// Store is the bbolt engine. Use Open.
type Store struct {
	db       *bolt.DB
	path     string
	capBytes int64
	batch    bool
	opts     Options

	queue chan *op
	stop  chan struct{}
	done  chan struct{}

	// tail: hash-index entries not merged into the index yet; tailStale:
	// it took entries from a transaction that was then thrown away.
	tail      hashTail
	tailStale bool
	// filter: every hash prefix held, for the commit loop's dedup check.
	filter *hashFilter

	// gate: calls in flight, so Close can wait for them without a lock
	// that a ForEach callback re-entering the store could deadlock on.
	gateMu  sync.Mutex
	active  int
	closing bool
	idle    chan struct{}

	// The commit loop's own: the write transaction kept open between
	// checkpoints, the redo log, the batch whose records are being synced,
	// and the growth accounting of the open transaction.
	tx       *bolt.Tx
	log      *redoLog
	flight   *flight
	forming  group
	lastTrim time.Time
	curTx    *bolt.Tx
	txGrowth int64

	// dirty: accounts with stores in the open transaction.
	dirtyMu sync.Mutex
	dirty   map[storage.Account]struct{}

	fsyncs    atomic.Int64
	stores    atomic.Int64
	pruned    atomic.Int64
	lastPrune atomic.Int64

	// Filesystem limit cache for the size cap (see diskLimit).
	limitAt, limit atomic.Int64
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path.
func Open(path string, opts Options) (storage.Store, error) {
	return open(path, opts)
}

func open(path string, opts Options) (*Store, error) {
	if opts.CapBytes <= 0 {
		opts.CapBytes = DefaultCapBytes
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		// Another snoded on the same data dir must fail, not hang.
		Timeout: 2 * time.Second,
		// The hashmap freelist allocates in O(1) however fragmented a
		// multi-gigabyte file gets; the array one degrades linearly.
		FreelistType: bolt.FreelistMapType,
		// Not writing the freelist on every commit saves a page write
		// (and flash wear) per fsync; the cost is a scan of the file to
		// rebuild it at open, once per boot.
		NoFreelistSync: true,
		// Readers hold the mmap lock, and a remap to grow the file waits
		// for all of them. Mapping 1 GiB of address space up front (free
		// on arm64; the file itself grows only as written) means stores
		// don't stall behind long retrieves until the DB passes that.
		InitialMmapSize: 1 << 30,
		// NoSync stays false: a Store returns only after fdatasync.
	})
	if err != nil {
		return nil, fmt.Errorf("open message db %s: %w", path, err)
	}
	if err := migrate(db, opts.migrateChunk); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate message db %s: %w", path, err)
	}
	var logID, logged uint64
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bktMsg, bktHash, bktBox, bktExp, bktRev, bktMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("bucket %s: %w", b, err)
			}
		}
		// The layout version lets a later release migrate, and stops an
		// older one from misreading a newer file.
		m := tx.Bucket(bktMeta)
		switch v := getU64(m, keyVersion); v {
		case 0:
			if err := putU64(m, keyVersion, layoutVersion); err != nil {
				return err
			}
		case layoutVersion:
		default:
			return fmt.Errorf("database layout version %d, this build reads %d", v, layoutVersion)
		}
		logID, logged = getU64(m, keyLogID), getU64(m, keyLogged)
		if logID == 0 {
			var b [8]byte
			if _, err := rand.Read(b[:]); err != nil {
				return err
			}
			logID = binary.BigEndian.Uint64(b[:]) | 1
			return putU64(m, keyLogID, logID)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init message db %s: %w", path, err)
	}
	s := &Store{
		db: db, path: path, capBytes: opts.CapBytes, batch: opts.boltBatch, opts: opts,
		queue: make(chan *op, maxQueueOps),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		idle:  make(chan struct{}),
		dirty: map[storage.Account]struct{}{},
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := s.loadTail(tx); err != nil {
			return err
		}
		s.filter, err = s.buildFilter(tx)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open message db %s: %w", path, err)
	}
	if err := s.recover(logID, logged); err != nil {
		db.Close()
		return nil, fmt.Errorf("open message db %s: %w", path, err)
	}
	go s.commitLoop()
	return s, nil
}

// recover opens the redo log and applies the acknowledged stores that the
// last checkpoint before a crash did not reach.
func (s *Store) recover(logID, logged uint64) error {
	log, recs, err := openRedoLog(s.path+"-redo", logID)
	if err != nil {
		return err
	}
	s.log = log
	log.lsn = logged
	var todo []redoRecord
	for _, r := range recs {
		if r.lsn > logged {
			todo = append(todo, r)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	log.lsn = todo[len(todo)-1].lsn
	err = s.db.Update(func(tx *bolt.Tx) error {
		s.beginTx(tx)
		if err := s.replay(tx, todo); err != nil {
			return err
		}
		return putU64(tx.Bucket(bktMeta), keyLogged, log.lsn)
	})
	clear(s.dirty)
	if err != nil {
		log.close()
		return fmt.Errorf("replay redo log %s: %w", log.path, err)
	}
	log.checkpointed()
	return nil
}

// ---- encodings ----

const hashLen = 43

func nsKey(ns storage.Namespace) uint16 { return uint16(ns) ^ 0x8000 }

func ownerPrefix(a storage.Account) []byte {
	k := make([]byte, 8+33, 8+33+2+8)
	binary.BigEndian.PutUint64(k, storage.Position(a.Key))
	k[8] = a.Type
	copy(k[9:], a.Key[:])
	return k
}

func boxPrefix(a storage.Account, ns storage.Namespace) []byte {
	return binary.BigEndian.AppendUint16(ownerPrefix(a), nsKey(ns))
}

func boxKey(a storage.Account, ns storage.Namespace, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(boxPrefix(a, ns), seq)
}

// hashPrefix is the hash index's part of a message hash: the first 8 of
// the 32 bytes its base64 encodes. A hash that is not base64 (the engine
// only checks the length of a hash a peer sends) gets an FNV-1a digest of
// its text instead; the full compare in lookup keeps either kind exact.
func hashPrefix(hash string) [8]byte {
	var p [8]byte
	var src [12]byte
	var dst [9]byte
	if len(hash) >= len(src) {
		copy(src[:], hash)
		if _, err := base64.RawStdEncoding.Decode(dst[:], src[:]); err == nil {
			copy(p[:], dst[:8])
			return p
		}
	}
	h := fnv.New64a()
	h.Write([]byte(hash))
	binary.BigEndian.PutUint64(p[:], h.Sum64())
	return p
}

func hashKey(hash string, seq uint64) []byte {
	p := hashPrefix(hash)
	return binary.BigEndian.AppendUint64(p[:], seq)
}

func expKey(expiry int64, seq uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(expiry)^1<<63)
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

// record is a decoded msg value.
type record struct {
	seq uint64
	m   storage.Message
}

const recHeader = recHashAt + hashLen

// recHashAt is where a record's copy of the message hash starts.
const recHashAt = 8 + 8 + 33 + 2

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// keySeq reads the seq that ends box and exp keys.
func keySeqOf(k []byte) uint64 { return binary.BigEndian.Uint64(k[len(k)-8:]) }

func encodeRecord(m storage.Message) []byte {
	v := make([]byte, recHeader, recHeader+len(m.Data))
	binary.BigEndian.PutUint64(v[0:], uint64(m.Timestamp))
	binary.BigEndian.PutUint64(v[8:], uint64(m.Expiry))
	v[16] = m.Owner.Type
	copy(v[17:49], m.Owner.Key[:])
	binary.BigEndian.PutUint16(v[49:], uint16(m.Namespace))
	copy(v[recHashAt:recHashAt+hashLen], m.Hash)
	return append(v, m.Data...)
}

// decodeHeader reads everything but the data.
func decodeHeader(seq uint64, v []byte) (record, error) {
	if len(v) < recHeader {
		return record{}, fmt.Errorf("message %d: record of %d bytes is truncated", seq, len(v))
	}
	var r record
	r.seq = seq
	r.m.Timestamp = int64(binary.BigEndian.Uint64(v[0:]))
	r.m.Expiry = int64(binary.BigEndian.Uint64(v[8:]))
	r.m.Owner.Type = v[16]
	copy(r.m.Owner.Key[:], v[17:49])
	r.m.Namespace = storage.Namespace(int16(binary.BigEndian.Uint16(v[49:])))
	r.m.Hash = string(v[recHashAt : recHashAt+hashLen])
	return r, nil
}

// decodeRecord copies everything out of v (bbolt memory is only valid
// inside the transaction).
func decodeRecord(seq uint64, v []byte) (record, error) {
	r, err := decodeHeader(seq, v)
	if err != nil {
		return r, err
	}
	r.m.Data = bytes.Clone(v[recHeader:])
	if r.m.Data == nil {
		r.m.Data = []byte{}
	}
	return r, nil
}

// load reads message seq; full=false skips copying the data.
func load(msgs *bolt.Bucket, seq uint64, full bool) (record, error) {
	v := msgs.Get(seqKey(seq))
	if v == nil {
		return record{}, fmt.Errorf("index names missing message %d", seq)
	}
	return decode(seq, v, full)
}

// decode reads a msg value, with its data when full.
func decode(seq uint64, v []byte, full bool) (record, error) {
	if full {
		return decodeRecord(seq, v)
	}
	return decodeHeader(seq, v)
}

// lookup finds a message by hash: the index names the messages whose
// hashes share its 8-byte prefix (almost always one or none), and the
// record's own copy of the hash tells which is it.
// Messages stored since their slice of the index was last merged are
// found through the tail (hashtail.go) instead.
func (s *Store) lookup(tx *bolt.Tx, hash string, full bool) (record, bool, error) {
	p := hashPrefix(hash)
	msgs := tx.Bucket(bktMsg)
	// match reads candidate seq; ok is false when it holds another hash.
	match := func(seq uint64, v []byte) (r record, ok bool, err error) {
		if len(v) < recHeader || string(v[recHashAt:recHashAt+hashLen]) != hash {
			return record{}, false, nil
		}
		r, err = decode(seq, v, full)
		return r, err == nil, err
	}
	c := tx.Bucket(bktHash).Cursor()
	for k, _ := c.Seek(p[:]); len(k) == 16 && bytes.Equal(k[:8], p[:]); k, _ = c.Next() {
		seq := binary.BigEndian.Uint64(k[8:])
		v := msgs.Get(k[8:])
		if v == nil {
			return record{}, false, fmt.Errorf("index names missing message %d", seq)
		}
		if r, ok, err := match(seq, v); ok || err != nil {
			return r, ok, err
		}
	}
	seqs, behind := s.tail.find(binary.BigEndian.Uint64(p[:]))
	for _, seq := range seqs {
		// The tail is the open transaction's: a read snapshot may not
		// hold a message it names yet (or any more), which is no match.
		if r, ok, err := match(seq, msgs.Get(seqKey(seq))); ok || err != nil {
			return r, ok, err
		}
	}
	if !tx.Writable() && tx.ID() < behind {
		return record{}, false, errSnapshotBehind
	}
	return record{}, false, nil
}

// ---- the call gate ----

func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	if s.closing {
		return storage.ErrClosed
	}
	s.active++
	return nil
}

func (s *Store) leave() {
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	s.active--
	if s.closing && s.active == 0 {
		close(s.idle)
	}
}

// Close waits for calls in flight, stops the commit queue and closes the
// file. Calls that start after Close began get storage.ErrClosed.
func (s *Store) Close() error {
	s.gateMu.Lock()
	if s.closing {
		s.gateMu.Unlock()
		return nil
	}
	s.closing = true
	wait := s.active > 0
	s.gateMu.Unlock()
	if wait {
		<-s.idle
	}
	close(s.stop)
	<-s.done
	// The loop's last checkpoint emptied the log; if it failed, the log
	// is replayed at the next open.
	s.log.close()
	// A file closed with an empty tail is whole for a build without one
	// (an image rolled back to), and opens without a rebuild.
	err := s.mergeWholeTail()
	if cerr := s.db.Close(); cerr != nil {
		return fmt.Errorf("close message db %s: %w", s.path, cerr)
	}
	if err != nil {
		return fmt.Errorf("close message db %s: merge hash index: %w", s.path, err)
	}
	return nil
}

func (s *Store) beginTx(tx *bolt.Tx) {
	if s.curTx != tx {
		s.curTx = tx
		s.txGrowth = 0
	}
}

// ---- transaction helpers ----

type meta struct {
	seq, messages, accounts uint64
}

func getU64(b *bolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func putU64(b *bolt.Bucket, k []byte, x uint64) error {
	return b.Put(k, binary.BigEndian.AppendUint64(nil, x))
}

// wtx is one op's view of a write transaction.
type wtx struct {
	s                        *Store
	tx                       *bolt.Tx
	msg, hash, box, exp, met *bolt.Bucket
	meta                     meta
}

func (s *Store) wtx(tx *bolt.Tx) *wtx {
	w := &wtx{s: s, tx: tx, msg: tx.Bucket(bktMsg), hash: tx.Bucket(bktHash), box: tx.Bucket(bktBox),
		exp: tx.Bucket(bktExp), met: tx.Bucket(bktMeta)}
	// Records are appended in seq order: pack their pages full instead of
	// bbolt's default half-full split, which suits random inserts.
	w.msg.FillPercent = 0.95
	w.meta = meta{getU64(w.met, keySeq), getU64(w.met, keyMessages), getU64(w.met, keyAccounts)}
	return w
}

func (w *wtx) save() error {
	if err := putU64(w.met, keySeq, w.meta.seq); err != nil {
		return err
	}
	if err := putU64(w.met, keyMessages, w.meta.messages); err != nil {
		return err
	}
	return putU64(w.met, keyAccounts, w.meta.accounts)
}

// full reports whether adding need bytes would pass the cap. Used space is
// the file's high-water mark minus the free pages bbolt will reuse, plus
// what this transaction has added so far.
//
// The cap is also lowered to what the filesystem can still hold: the
// default cap suits a 32 GB card, and on a smaller one the disk must not
// fill first (a failed commit would fail every store of its batch with an
// I/O error instead of a clean ErrFull, and starve the rest of the system).
func (w *wtx) full(need int64) bool {
	st := w.s.db.Stats()
	pageSize := int64(w.s.db.Info().PageSize)
	used := w.tx.Size() - int64(st.FreePageN+st.PendingPageN)*pageSize + w.s.txGrowth
	limit := w.s.capBytes
	if disk := w.s.diskLimit(); disk >= 0 && disk < limit {
		limit = disk
	}
	return used+need > limit
}

// diskReserve is left free on the data filesystem for the rest of the
// node (logs, state, bbolt's own growth steps).
const diskReserve = 256 << 20

// diskLimit is the largest the database file may grow to on its
// filesystem: its current size plus the free space, minus diskReserve; -1
// if unknown. statfs runs at most once a second, not once per store.
func (s *Store) diskLimit() int64 {
	now := time.Now().UnixNano()
	if now-s.limitAt.Load() < int64(time.Second) {
		return s.limit.Load()
	}
	s.limitAt.Store(now)
	limit := int64(-1)
	if avail, err := statfsAvail(filepath.Dir(s.path)); err == nil {
		if fi, err := os.Stat(s.path); err == nil {
			limit = max(0, fi.Size()+avail-diskReserve)
		}
	}
	s.limit.Store(limit)
	return limit
}

func need(m storage.Message) int64 { return int64(len(m.Data)) + perMessageOverhead }

func hasPrefix(c *bolt.Cursor, prefix []byte) bool {
	k, _ := c.Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

var empty = []byte{}

// insert adds a new message (the caller checked it is not stored). rec is
// its encoded record, or nil to encode it here; bbolt keeps a reference to
// it until the commit, so it must not change.
func (w *wtx) insert(m storage.Message, rec []byte) error {
	if rec == nil {
		rec = encodeRecord(m)
	}
	owner := ownerPrefix(m.Owner)
	if !hasPrefix(w.box.Cursor(), owner) {
		w.meta.accounts++
	}
	w.meta.seq++
	seq := w.meta.seq
	if err := w.msg.Put(seqKey(seq), rec); err != nil {
		return fmt.Errorf("put message: %w", err)
	}
	if w.s.batch {
		// The comparison path commits through bbolt alone: no tail.
		if err := w.hash.Put(hashKey(m.Hash, seq), empty); err != nil {
			return fmt.Errorf("put hash index: %w", err)
		}
	} else {
		if err := w.s.noteNew(w.tx, prefixOf(m.Hash), seq); err != nil {
			return err
		}
	}
	if err := w.box.Put(boxKey(m.Owner, m.Namespace, seq), empty); err != nil {
		return fmt.Errorf("put box index: %w", err)
	}
	if err := w.exp.Put(expKey(m.Expiry, seq), empty); err != nil {
		return fmt.Errorf("put expiry index: %w", err)
	}
	w.meta.messages++
	w.s.txGrowth += need(m)
	return nil
}

// get finds a message by hash, without its data. In the commit loop the
// filter answers for most hashes that are not held.
func (w *wtx) get(hash string) (record, bool, error) {
	if !w.s.batch && !w.s.filter.mayHold(prefixOf(hash)) {
		return record{}, false, nil
	}
	return w.s.lookup(w.tx, hash, false)
}

// lookupOwned finds a message by hash only when owner owns it: hashes are
// global, and an account may only see or change its own messages.
func (s *Store) lookupOwned(tx *bolt.Tx, hash string, owner storage.Account) (record, bool, error) {
	r, ok, err := s.lookup(tx, hash, false)
	if err != nil || !ok || r.m.Owner != owner {
		return record{}, false, err
	}
	return r, true, nil
}

// remove deletes a stored message and its index entries.
func (w *wtx) remove(r record) error {
	if err := w.msg.Delete(seqKey(r.seq)); err != nil {
		return err
	}
	if err := w.hash.Delete(hashKey(r.m.Hash, r.seq)); err != nil {
		return err
	}
	w.s.tail.remove(prefixOf(r.m.Hash), r.seq)
	if err := w.box.Delete(boxKey(r.m.Owner, r.m.Namespace, r.seq)); err != nil {
		return err
	}
	if err := w.exp.Delete(expKey(r.m.Expiry, r.seq)); err != nil {
		return err
	}
	w.meta.messages--
	if !hasPrefix(w.box.Cursor(), ownerPrefix(r.m.Owner)) {
		w.meta.accounts--
	}
	// txGrowth is not lowered: freed pages are reusable only after commit.
	return nil
}

// setExpiry rewrites the record's expiry and its index entry.
func (w *wtx) setExpiry(r record, expiry int64) error {
	v := w.msg.Get(seqKey(r.seq))
	if len(v) < recHeader {
		return fmt.Errorf("message %d vanished during its update", r.seq)
	}
	nv := bytes.Clone(v)
	binary.BigEndian.PutUint64(nv[8:], uint64(expiry))
	if err := w.msg.Put(seqKey(r.seq), nv); err != nil {
		return err
	}
	if err := w.exp.Delete(expKey(r.m.Expiry, r.seq)); err != nil {
		return err
	}
	return w.exp.Put(expKey(expiry, r.seq), empty)
}

// removeSeqs deletes the messages with these seqs (collected from an index
// first: bbolt cursors must not walk a bucket that is being modified).
func (w *wtx) removeSeqs(seqs []uint64) (int, error) {
	for _, seq := range seqs {
		r, err := load(w.msg, seq, false)
		if err != nil {
			return 0, err
		}
		if err := w.remove(r); err != nil {
			return 0, err
		}
	}
	return len(seqs), nil
}

// records lists the stored messages whose box keys start with prefix.
func (w *wtx) records(prefix []byte, full bool) ([]record, error) {
	var seqs []uint64
	c := w.box.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		seqs = append(seqs, keySeqOf(k))
	}
	out := make([]record, 0, len(seqs))
	for _, seq := range seqs {
		r, err := load(w.msg, seq, full)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func withHash(m storage.Message) storage.Message {
	if m.Hash == "" {
		m.Hash = storage.MessageHash(m.Owner, m.Namespace, m.Data)
	}
	return m
}

func validMessage(m storage.Message) error {
	if len(m.Hash) != hashLen {
		return fmt.Errorf("message hash %q: want %d characters", m.Hash, hashLen)
	}
	return nil
}

// ---- storage.Store: writes ----

// Store implements storage.Store.
func (s *Store) Store(ctx context.Context, m storage.Message) (bool, int64, error) {
	if err := s.enter(ctx); err != nil {
		return false, 0, err
	}
	defer s.leave()
	m = withHash(m)
	if err := validMessage(m); err != nil {
		return false, 0, err
	}
	var res storeResult
	o := &op{size: len(m.Data), redo: encodeRedo(m), owner: m.Owner}
	o.fn = func(tx *bolt.Tx) error {
		var err error
		res, err = s.wtx(tx).store(m, o.redo, true)
		o.logged = res.changed
		return err
	}
	o.after = func() {
		if res.inserted {
			s.stores.Add(1)
		}
	}
	var err error
	if s.batch {
		err = s.write(o.size, o.fn, o.after)
	} else {
		err = s.submit(o)
	}
	if err != nil {
		return false, 0, fmt.Errorf("store %s: %w", m.Hash, err)
	}
	if res.full {
		return false, 0, storage.ErrFull
	}
	return res.already, res.expiry, nil
}

// storeResult is what one store did.
type storeResult struct {
	already, inserted, full bool
	changed                 bool // the database changed: the store must be logged
	expiry                  int64
}

// store is Store's work inside a transaction. rec is m's record as
// encodeRecord makes it (the redo payload is one), so a 1 KiB message is
// not encoded twice. capped=false skips the size cap, for stores being
// replayed: they were acknowledged already.
func (w *wtx) store(m storage.Message, rec []byte, capped bool) (storeResult, error) {
	var res storeResult
	r, ok, err := w.get(m.Hash)
	if err != nil {
		return res, err
	}
	if ok {
		res.already, res.expiry = true, r.m.Expiry
		if m.Expiry > r.m.Expiry {
			res.expiry, res.changed = m.Expiry, true
			return res, w.setExpiry(r, m.Expiry)
		}
		return res, nil
	}
	if capped && w.full(need(m)) {
		res.full = true
		return res, nil
	}
	res.changed = true
	if m.Namespace.PublicOutbox() {
		old, err := w.records(boxPrefix(m.Owner, m.Namespace), false)
		if err != nil {
			return res, err
		}
		for _, r := range old {
			if err := w.remove(r); err != nil {
				return res, err
			}
		}
	}
	if err := w.insert(m, rec); err != nil {
		return res, err
	}
	res.inserted, res.expiry = true, m.Expiry
	return res, w.save()
}

// A store's redo record is its message record, which carries all of the
// message, hash and owner included.
func encodeRedo(m storage.Message) []byte { return encodeRecord(m) }

func decodeRedo(p []byte) (storage.Message, error) {
	r, err := decodeRecord(0, p)
	if err != nil {
		return storage.Message{}, err
	}
	return r.m, validMessage(r.m)
}

// StoreBatch implements storage.Store. Existing messages are left as they
// are; in a public outbox the later timestamp wins, so an older copy pushed
// by a peer cannot replace the owner's current message.
func (s *Store) StoreBatch(ctx context.Context, ms []storage.Message) (int, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.leave()
	total := 0
	for len(ms) > 0 {
		chunk := make([]storage.Message, min(batchChunk, len(ms)))
		copy(chunk, ms) // withHash must not write into the caller's slice
		ms = ms[len(chunk):]
		size := 0
		for i := range chunk {
			chunk[i] = withHash(chunk[i])
			if err := validMessage(chunk[i]); err != nil {
				return total, err
			}
			size += len(chunk[i].Data)
		}
		var n int
		var full bool
		err := s.write(size, func(tx *bolt.Tx) error {
			n, full = 0, false
			w := s.wtx(tx)
			for _, m := range chunk {
				if _, ok, err := w.get(m.Hash); err != nil {
					return err
				} else if ok {
					continue
				}
				if w.full(need(m)) {
					full = true
					break
				}
				if m.Namespace.PublicOutbox() {
					old, err := w.records(boxPrefix(m.Owner, m.Namespace), false)
					if err != nil {
						return err
					}
					if slices.ContainsFunc(old, func(r record) bool { return r.m.Timestamp > m.Timestamp }) {
						continue
					}
					for _, r := range old {
						if err := w.remove(r); err != nil {
							return err
						}
					}
				}
				if err := w.insert(m, nil); err != nil {
					return err
				}
				n++
			}
			return w.save()
		}, func() { s.stores.Add(int64(n)) })
		if err != nil {
			return total, fmt.Errorf("store batch: %w", err)
		}
		total += n
		if full {
			return total, storage.ErrFull
		}
	}
	return total, nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, owner storage.Account, hashes []string) ([]string, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.leave()
	var deleted []string
	err := s.write(0, func(tx *bolt.Tx) error {
		deleted = nil
		w := s.wtx(tx)
		for _, h := range hashes {
			r, ok, err := s.lookupOwned(tx, h, owner)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := w.remove(r); err != nil {
				return err
			}
			deleted = append(deleted, h)
		}
		return w.save()
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("delete: %w", err)
	}
	slices.Sort(deleted)
	return deleted, nil
}

func prefixes(owner storage.Account, f storage.NSFilter) []byte {
	if f.All {
		return ownerPrefix(owner)
	}
	return boxPrefix(owner, f.NS)
}

// editWhere applies edit to each of the owner's messages in f, in one
// write, and returns namespace → sorted hashes of the messages edit
// reports it changed (removed or re-expired). removes says edit may remove
// messages, so the message and account counters are saved.
func (s *Store) editWhere(ctx context.Context, what string, owner storage.Account, f storage.NSFilter, removes bool, edit func(w *wtx, r record) (bool, error)) (map[storage.Namespace][]string, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.leave()
	var out map[storage.Namespace][]string
	err := s.write(0, func(tx *bolt.Tx) error {
		out = map[storage.Namespace][]string{}
		w := s.wtx(tx)
		rs, err := w.records(prefixes(owner, f), false)
		if err != nil {
			return err
		}
		for _, r := range rs {
			changed, err := edit(w, r)
			if err != nil {
				return err
			}
			if changed {
				out[r.m.Namespace] = append(out[r.m.Namespace], r.m.Hash)
			}
		}
		if removes {
			return w.save()
		}
		return nil
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return storage.SortedByNamespace(out), nil
}

// deleteWhere removes the owner's messages in f that match.
func (s *Store) deleteWhere(ctx context.Context, what string, owner storage.Account, f storage.NSFilter, match func(storage.Message) bool) (map[storage.Namespace][]string, error) {
	return s.editWhere(ctx, what, owner, f, true, func(w *wtx, r record) (bool, error) {
		if !match(r.m) {
			return false, nil
		}
		return true, w.remove(r)
	})
}

// DeleteAll implements storage.Store.
func (s *Store) DeleteAll(ctx context.Context, owner storage.Account, f storage.NSFilter) (map[storage.Namespace][]string, error) {
	return s.deleteWhere(ctx, "delete all", owner, f, func(storage.Message) bool { return true })
}

// DeleteBefore implements storage.Store.
func (s *Store) DeleteBefore(ctx context.Context, owner storage.Account, f storage.NSFilter, before int64) (map[storage.Namespace][]string, error) {
	return s.deleteWhere(ctx, "delete before", owner, f, func(m storage.Message) bool { return m.Timestamp <= before })
}

// ExpireAll implements storage.Store.
func (s *Store) ExpireAll(ctx context.Context, owner storage.Account, f storage.NSFilter, expiry int64) (map[storage.Namespace][]string, error) {
	return s.editWhere(ctx, "expire all", owner, f, false, func(w *wtx, r record) (bool, error) {
		if r.m.Expiry <= expiry {
			return false, nil
		}
		return true, w.setExpiry(r, expiry)
	})
}

// UpdateExpiry implements storage.Store. A hash named twice is applied in
// request order and reported once.
func (s *Store) UpdateExpiry(ctx context.Context, owner storage.Account, hashes []string, expiries []int64, mode storage.ExpiryMode) ([]storage.ExpiryUpdate, error) {
	if len(hashes) != len(expiries) {
		return nil, fmt.Errorf("update expiry: %d hashes but %d expiries", len(hashes), len(expiries))
	}
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.leave()
	var us storage.ExpiryUpdates
	err := s.write(0, func(tx *bolt.Tx) error {
		us = storage.ExpiryUpdates{}
		w := s.wtx(tx)
		for i, h := range hashes {
			r, ok, err := s.lookupOwned(tx, h, owner)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if _, changed := us.Apply(h, r.m.Expiry, expiries[i], mode); changed {
				if err := w.setExpiry(r, expiries[i]); err != nil {
					return err
				}
			}
		}
		return nil
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("update expiry: %w", err)
	}
	return us.List(), nil
}

// Prune implements storage.Store, in transactions of at most pruneChunk
// deletions so stores queued meanwhile commit between them.
func (s *Store) Prune(ctx context.Context, now int64) (int, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.leave()
	total := 0
	limit := expKey(now, ^uint64(0))
	for {
		n := 0
		err := s.write(0, func(tx *bolt.Tx) error {
			n = 0
			w := s.wtx(tx)
			var seqs []uint64
			c := w.exp.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k, limit) <= 0 && len(seqs) < pruneChunk; k, _ = c.Next() {
				seqs = append(seqs, keySeqOf(k))
			}
			var err error
			n, err = w.removeSeqs(seqs)
			if err != nil {
				return err
			}
			return w.save()
		}, func() { s.pruned.Add(int64(n)) })
		if err != nil {
			return total, fmt.Errorf("prune: %w", err)
		}
		total += n
		if n < pruneChunk || ctx.Err() != nil {
			break
		}
	}
	s.lastPrune.Store(now)
	// Prune runs every few seconds on a node: a good moment to hand the
	// clean database pages back (see trim).
	if err := s.trim(); err != nil {
		return total, fmt.Errorf("prune: trim mapping: %w", err)
	}
	return total, nil
}

// segments turns the ring range (lower, upper] into inclusive position
// intervals.
func segments(lower, upper uint64) [][2]uint64 {
	switch {
	case lower == upper:
		return [][2]uint64{{0, ^uint64(0)}}
	case lower < upper:
		return [][2]uint64{{lower + 1, upper}}
	case lower == ^uint64(0):
		return [][2]uint64{{0, upper}}
	default:
		return [][2]uint64{{lower + 1, ^uint64(0)}, {0, upper}}
	}
}

func posKey(p uint64) []byte { return binary.BigEndian.AppendUint64(nil, p) }

func keyPos(k []byte) uint64 { return binary.BigEndian.Uint64(k) }

// DropRange implements storage.Store, in chunks like Prune.
func (s *Store) DropRange(ctx context.Context, lower, upper uint64) (int, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.leave()
	total := 0
	for _, seg := range segments(lower, upper) {
		for {
			n := 0
			err := s.write(0, func(tx *bolt.Tx) error {
				n = 0
				w := s.wtx(tx)
				var seqs []uint64
				c := w.box.Cursor()
				for k, _ := c.Seek(posKey(seg[0])); k != nil && keyPos(k) <= seg[1] && len(seqs) < pruneChunk; k, _ = c.Next() {
					seqs = append(seqs, keySeqOf(k))
				}
				var err error
				n, err = w.removeSeqs(seqs)
				if err != nil {
					return err
				}
				return w.save()
			}, nil)
			if err != nil {
				return total, fmt.Errorf("drop range: %w", err)
			}
			total += n
			if n < pruneChunk {
				break
			}
			if err := ctx.Err(); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

func encodeRevocations(rs []storage.Revocation) []byte {
	var v []byte
	for _, r := range rs {
		v = binary.BigEndian.AppendUint64(v, uint64(r.At))
		v = binary.BigEndian.AppendUint16(v, uint16(len(r.Token)))
		v = append(v, r.Token...)
	}
	return v
}

func decodeRevocations(v []byte) ([]storage.Revocation, error) {
	var out []storage.Revocation
	for len(v) > 0 {
		if len(v) < 10 {
			return nil, errors.New("revocation list is truncated")
		}
		at, n := int64(binary.BigEndian.Uint64(v)), int(binary.BigEndian.Uint16(v[8:]))
		if len(v) < 10+n {
			return nil, errors.New("revocation list is truncated")
		}
		out = append(out, storage.Revocation{At: at, Token: bytes.Clone(v[10 : 10+n])})
		v = v[10+n:]
	}
	return out, nil
}

func (s *Store) updateRevocations(ctx context.Context, owner storage.Account, what string, edit func([]storage.Revocation) []storage.Revocation) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	key := owner.Bytes()
	err := s.write(0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bktRev)
		list, err := decodeRevocations(b.Get(key))
		if err != nil {
			return fmt.Errorf("account %s: %w", owner, err)
		}
		list = edit(list)
		if len(list) == 0 {
			return b.Delete(key)
		}
		return b.Put(key, encodeRevocations(list))
	}, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Revoke implements storage.Store.
func (s *Store) Revoke(ctx context.Context, owner storage.Account, tokens [][]byte, now int64) error {
	return s.updateRevocations(ctx, owner, "revoke", func(list []storage.Revocation) []storage.Revocation {
		return storage.Revoke(list, tokens, now)
	})
}

// Unrevoke implements storage.Store.
func (s *Store) Unrevoke(ctx context.Context, owner storage.Account, tokens [][]byte) (int, error) {
	var n int
	err := s.updateRevocations(ctx, owner, "unrevoke", func(list []storage.Revocation) []storage.Revocation {
		list, n = storage.Unrevoke(list, tokens)
		return list
	})
	return n, err
}

// ---- storage.Store: reads ----

// view runs fn in a read transaction. Reads that stores can change name
// the account they read (viewOf) or read across accounts (viewAll): when
// that has stores not yet checkpointed, fn runs in the commit loop's open
// write transaction instead, so a reader always sees every store that was
// acknowledged before it asked.
func (s *Store) view(ctx context.Context, what string, fn func(tx *bolt.Tx) error) error {
	return s.viewIn(ctx, what, false, fn)
}

func (s *Store) viewOf(ctx context.Context, what string, owner storage.Account, fn func(tx *bolt.Tx) error) error {
	return s.viewIn(ctx, what, s.isDirty(&owner), fn)
}

func (s *Store) viewAll(ctx context.Context, what string, fn func(tx *bolt.Tx) error) error {
	return s.viewIn(ctx, what, s.isDirty(nil), fn)
}

func (s *Store) viewIn(ctx context.Context, what string, inLoop bool, fn func(tx *bolt.Tx) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	var err error
	if inLoop {
		err = s.submit(&op{fn: fn, read: true})
	} else {
		err = s.db.View(fn)
		for errors.Is(err, errSnapshotBehind) {
			err = s.db.View(fn)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Revoked implements storage.Store: oldest revocation first.
func (s *Store) Revoked(ctx context.Context, owner storage.Account) ([][]byte, error) {
	var out [][]byte
	err := s.view(ctx, "revoked", func(tx *bolt.Tx) error {
		list, err := decodeRevocations(tx.Bucket(bktRev).Get(owner.Bytes()))
		for _, r := range list {
			out = append(out, r.Token)
		}
		return err
	})
	return out, err
}

// IsRevoked implements storage.Store.
func (s *Store) IsRevoked(ctx context.Context, owner storage.Account, token []byte) (bool, error) {
	var found bool
	err := s.view(ctx, "is revoked", func(tx *bolt.Tx) error {
		list, err := decodeRevocations(tx.Bucket(bktRev).Get(owner.Bytes()))
		found = storage.IsRevoked(list, token)
		return err
	})
	return found, err
}

// Retrieve implements storage.Store. maxSize <= 0 means no size limit.
func (s *Store) Retrieve(ctx context.Context, owner storage.Account, ns storage.Namespace, lastHash string, maxCount int, maxSize int64) ([]storage.Message, bool, error) {
	var out []storage.Message
	var more bool
	err := s.viewOf(ctx, "retrieve", owner, func(tx *bolt.Tx) error {
		out, more = nil, false
		msgs := tx.Bucket(bktMsg)
		prefix := boxPrefix(owner, ns)
		start := prefix
		if lastHash != "" {
			r, ok, err := s.lookup(tx, lastHash, false)
			if err != nil {
				return err
			}
			if ok && r.m.Owner == owner && r.m.Namespace == ns {
				start = boxKey(owner, ns, r.seq+1)
			}
		}
		page := storage.RetrievePage{MaxCount: maxCount, MaxSize: maxSize}
		c := tx.Bucket(bktBox).Cursor()
		for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if page.Full() {
				more = true
				return nil
			}
			seq := keySeqOf(k)
			v := msgs.Get(seqKey(seq))
			if len(v) < recHeader {
				return fmt.Errorf("index names missing message %d", seq)
			}
			if !page.Take(storage.RetrieveCost(hashLen, len(v)-recHeader)) {
				more = true
				return nil
			}
			r, err := decodeRecord(seq, v)
			if err != nil {
				return err
			}
			out = append(out, r.m)
		}
		return nil
	})
	return out, more, err
}

// GetExpiries implements storage.Store.
func (s *Store) GetExpiries(ctx context.Context, owner storage.Account, hashes []string) (map[string]int64, error) {
	out := map[string]int64{}
	err := s.viewOf(ctx, "get expiries", owner, func(tx *bolt.Tx) error {
		for _, h := range hashes {
			r, ok, err := s.lookupOwned(tx, h, owner)
			if err != nil {
				return err
			}
			if ok {
				out[h] = r.m.Expiry
			}
		}
		return nil
	})
	return out, err
}

// ForEach implements storage.Store. It reads walkBatch messages per read
// transaction and calls fn outside it, so fn may write to the store and a
// slow fn never holds pages bbolt would like to reuse.
func (s *Store) ForEach(ctx context.Context, lower, upper uint64, fn func(storage.Message) error) error {
	for _, seg := range segments(lower, upper) {
		var after []byte // last box key handed out
		for {
			var batch []storage.Message
			full := false
			err := s.viewAll(ctx, "walk range", func(tx *bolt.Tx) error {
				batch, full = nil, false
				size := 0
				msgs := tx.Bucket(bktMsg)
				c := tx.Bucket(bktBox).Cursor()
				var k []byte
				if after == nil {
					k, _ = c.Seek(posKey(seg[0]))
				} else {
					k, _ = c.Seek(after)
					if bytes.Equal(k, after) {
						k, _ = c.Next()
					}
				}
				for ; k != nil && keyPos(k) <= seg[1]; k, _ = c.Next() {
					if len(batch) >= walkBatch || size >= walkBytes {
						full = true
						break
					}
					r, err := load(msgs, keySeqOf(k), true)
					if err != nil {
						return err
					}
					batch = append(batch, r.m)
					size += len(r.m.Data)
					after = bytes.Clone(k)
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, m := range batch {
				if err := fn(m); err != nil {
					return err
				}
			}
			if !full {
				break
			}
		}
	}
	return nil
}

// Stats implements storage.Store.
func (s *Store) Stats() storage.Stats {
	st := storage.Stats{
		CapBytes:  s.capBytes,
		Fsyncs:    s.fsyncs.Load(),
		Stores:    s.stores.Load(),
		Pruned:    s.pruned.Load(),
		LastPrune: s.lastPrune.Load(),
	}
	if fi, err := os.Stat(s.path); err == nil {
		st.DBBytes = fi.Size()
	}
	s.viewAll(context.Background(), "stats", func(tx *bolt.Tx) error {
		b := tx.Bucket(bktMeta)
		st.Messages = int64(getU64(b, keyMessages))
		st.Accounts = int64(getU64(b, keyAccounts))
		return nil
	})
	return st
}
