package msgstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/storetest"
)

// toLayout1 rewrites a closed database into layout 1: the hash index keyed
// by the whole hash (hash → seq), version 1. A partial prefix index is
// left behind when partial is set, as a migration cut short would.
func toLayout1(t *testing.T, path string, partial bool) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		old, err := tx.CreateBucket(bktHashV1)
		if err != nil {
			return err
		}
		err = tx.Bucket(bktMsg).ForEach(func(k, v []byte) error {
			r, err := decodeHeader(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			return old.Put([]byte(r.m.Hash), append([]byte(nil), k...))
		})
		if err != nil {
			return err
		}
		if err := tx.DeleteBucket(bktHash); err != nil {
			return err
		}
		if partial {
			b, err := tx.CreateBucket(bktHash)
			if err != nil {
				return err
			}
			// An entry naming a message that does not exist: a
			// migration that kept it would fail lookups.
			if err := b.Put(hashKey(strings.Repeat("A", hashLen), 1<<40), empty); err != nil {
				return err
			}
		}
		return putU64(tx.Bucket(bktMeta), keyVersion, 1)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A database of layout 1 opens: every message is found by its hash again
// (a re-store says "already", a delete by hash deletes), the old index is
// gone and the file says layout 2. Chunks of 7 make the migration span many
// transactions; a partial index from a cut-short migration is rebuilt.
func TestMigratesLayout1(t *testing.T) {
	for _, partial := range []bool{false, true} {
		t.Run(fmt.Sprintf("partial=%v", partial), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "messages.db")
			s, err := open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			a := storetest.Account(1)
			var ms []storage.Message
			for i := range 50 {
				m := withHash(storetest.Msg(a, 0, fmt.Sprintf("message %d", i), 1, 9000))
				if _, _, err := s.Store(ctx, m); err != nil {
					t.Fatal(err)
				}
				ms = append(ms, m)
			}
			s.Close()
			toLayout1(t, path, partial)

			s, err = open(path, Options{migrateChunk: 7})
			if err != nil {
				t.Fatalf("open layout 1: %v", err)
			}
			defer s.Close()
			err = s.db.View(func(tx *bolt.Tx) error {
				if tx.Bucket(bktHashV1) != nil {
					t.Error("layout 1 hash index still there")
				}
				if v := getU64(tx.Bucket(bktMeta), keyVersion); v != layoutVersion {
					t.Errorf("layout version %d, want %d", v, layoutVersion)
				}
				if n := tx.Bucket(bktHash).Stats().KeyN; n != len(ms) {
					t.Errorf("hash index has %d entries, want %d", n, len(ms))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms[:40] {
				already, _, err := s.Store(ctx, m)
				if err != nil || !already {
					t.Fatalf("re-store of %s: already=%v, %v", m.Hash, already, err)
				}
			}
			gone, err := s.Delete(ctx, a, []string{ms[0].Hash, ms[49].Hash})
			if err != nil || len(gone) != 2 {
				t.Fatalf("delete by hash after migration: %v, %v", gone, err)
			}
			got, _, err := s.Retrieve(ctx, a, 0, "", 100, 0)
			if err != nil || len(got) != 48 {
				t.Fatalf("retrieve after migration: %d messages, %v", len(got), err)
			}
		})
	}
}

// Hashes that share the index's 8-byte prefix are told apart by the full
// hash in the record: each is found, a new one is not taken for an old
// one, and deleting one leaves the other.
func TestHashPrefixCollision(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, Options{})
	a := storetest.Account(2)
	same := strings.Repeat("Q", 12) // the 9 bytes the prefix is taken from
	m1 := storetest.Msg(a, 0, "one", 1, 9000)
	m1.Hash = same + strings.Repeat("A", hashLen-12)
	m2 := storetest.Msg(a, 0, "two", 1, 9000)
	m2.Hash = same + strings.Repeat("B", hashLen-12)
	if hashPrefix(m1.Hash) != hashPrefix(m2.Hash) {
		t.Fatal("test hashes do not share a prefix")
	}
	for _, m := range []storage.Message{m1, m2} {
		if already, _, err := s.Store(ctx, m); err != nil || already {
			t.Fatalf("store %s: already=%v, %v", m.Hash, already, err)
		}
	}
	exp, err := s.GetExpiries(ctx, a, []string{m1.Hash, m2.Hash, same + strings.Repeat("C", hashLen-12)})
	if err != nil || len(exp) != 2 {
		t.Fatalf("expiries of two colliding hashes and a third: %v, %v", exp, err)
	}
	if gone, err := s.Delete(ctx, a, []string{m1.Hash}); err != nil || len(gone) != 1 {
		t.Fatalf("delete one: %v, %v", gone, err)
	}
	got, _, err := s.Retrieve(ctx, a, 0, "", 10, 0)
	if err != nil || len(got) != 1 || got[0].Hash != m2.Hash {
		t.Fatalf("after deleting one of two: %v, %v", got, err)
	}
	// A hash that is not base64 still gets a prefix, from its digest.
	odd := strings.Repeat("!", hashLen)
	if hashPrefix(odd) == hashPrefix(strings.Repeat("?", hashLen)) {
		t.Error("two non-base64 hashes share a digest prefix")
	}
}
