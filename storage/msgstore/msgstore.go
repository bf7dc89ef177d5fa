// Package msgstore is the bbolt message engine behind storage.Store, built
// for SD cards: concurrent stores share fsyncs, indexes serve retrieval in
// insertion order and expiry pruning, and a size cap fails stores cleanly.
package msgstore

import (
	"errors"

	"github.com/snodebox/snodebox/storage"
)

// DefaultCapBytes fits a 32 GB card with room for the OS and slack.
const DefaultCapBytes int64 = 24 << 30

// Options tune the engine.
type Options struct {
	CapBytes int64 // 0 = DefaultCapBytes
}

// Open opens (creating if needed) the database file at path.
func Open(path string, opts Options) (storage.Store, error) {
	return nil, errors.New("msgstore not built yet")
}
