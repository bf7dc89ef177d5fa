//go:build !linux

package msgstore

import "errors"

// trim is a no-op where RSS accounting of file mappings is not a concern.
func (s *Store) trim() error { return nil }

// statfsAvail is unknown here: only the configured cap applies.
var statfsAvail = func(dir string) (int64, error) { return 0, errors.New("statfs not supported") }
