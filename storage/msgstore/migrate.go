package msgstore

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bktHashV1 is layout 1's hash index: the whole 43-character hash → seq.
var bktHashV1 = []byte("hash")

// migrateChunkDefault bounds one migration transaction: its dirty pages
// live on the heap until it commits, and a Pi has little of that.
const migrateChunkDefault = 20_000

// migrate brings a database of an older layout to layoutVersion before
// anything else reads it. A fresh file (no meta yet) and a current one are
// left alone; a newer one is refused later by Open's version check.
//
// Layout 1 → 2 builds the prefix-keyed hash index from the message records
// in chunks of their own transactions, then drops the old index and sets
// the version in one last commit. The file says version 1 until that
// commit, so a power cut midway leaves a database this function starts
// over on, never one with half an index that claims to be whole.
func migrate(db *bolt.DB, chunk int) error {
	if chunk <= 0 {
		chunk = migrateChunkDefault
	}
	var version uint64
	err := db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bktMeta); m != nil {
			version = getU64(m, keyVersion)
		}
		return nil
	})
	if err != nil || version != 1 {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bktHash) != nil {
			if err := tx.DeleteBucket(bktHash); err != nil {
				return fmt.Errorf("drop partial hash index: %w", err)
			}
		}
		_, err := tx.CreateBucket(bktHash)
		return err
	})
	if err != nil {
		return fmt.Errorf("layout 1→2: %w", err)
	}
	var from uint64
	for done := false; !done; {
		err := db.Update(func(tx *bolt.Tx) error {
			idx := tx.Bucket(bktHash)
			c := tx.Bucket(bktMsg).Cursor()
			n := 0
			k, v := c.Seek(seqKey(from))
			for ; k != nil && n < chunk; k, v = c.Next() {
				if len(k) != 8 {
					return fmt.Errorf("message key %x is not a sequence number", k)
				}
				seq := binary.BigEndian.Uint64(k)
				r, err := decodeHeader(seq, v)
				if err != nil {
					return err
				}
				if err := idx.Put(hashKey(r.m.Hash, seq), empty); err != nil {
					return fmt.Errorf("index message %d: %w", seq, err)
				}
				from = seq + 1
				n++
			}
			done = k == nil
			return nil
		})
		if err != nil {
			return fmt.Errorf("layout 1→2: %w", err)
		}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bktHashV1) != nil {
			if err := tx.DeleteBucket(bktHashV1); err != nil {
				return fmt.Errorf("drop layout 1 hash index: %w", err)
			}
		}
		return putU64(tx.Bucket(bktMeta), keyVersion, 2)
	})
	if err != nil {
		return fmt.Errorf("layout 1→2: %w", err)
	}
	return nil
}
