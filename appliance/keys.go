package appliance

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/snodebox/snodebox/netstack/identity"
)

// The identity backup lives on the boot partition (a FAT filesystem a user
// can copy to a PC, mounted with umask 0077 so only root reads it) and is
// restored on a fresh or factory-reset data partition, so a node keeps its
// name on the network across resets and card re-flashes of the data part.

// KeyBackupDir is the backup's directory relative to the boot partition.
const KeyBackupDir = "snodebox/identity"

// restoreKeys copies the backup into keyDir when keyDir has no identity.
// It reports whether it restored one.
func restoreKeys(backupDir, keyDir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(keyDir, identity.SeedFile)); err == nil {
		return false, nil
	}
	seed, err := os.ReadFile(filepath.Join(backupDir, identity.SeedFile))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read identity backup: %w", err)
	}
	k, err := identity.FromSeed(seed)
	if err != nil {
		return false, fmt.Errorf("identity backup: %w", err)
	}
	if err := identity.Save(keyDir, k); err != nil {
		return false, err
	}
	return true, nil
}

// backupKeys makes backupDir hold the same seed as keyDir. write prepares
// the backup location (remounting the boot partition read-write) and
// returns the function that undoes it; it is only called when a write is
// needed, so an unchanged backup costs no write to the boot partition.
func backupKeys(keyDir, backupDir string, write func() (done func(), err error)) (bool, error) {
	seed, err := os.ReadFile(filepath.Join(keyDir, identity.SeedFile))
	if err != nil {
		return false, fmt.Errorf("read identity: %w", err)
	}
	old, err := os.ReadFile(filepath.Join(backupDir, identity.SeedFile))
	if err == nil && bytes.Equal(old, seed) {
		return false, nil
	}
	k, err := identity.FromSeed(seed)
	if err != nil {
		return false, err
	}
	if write != nil {
		done, err := write()
		if err != nil {
			return false, err
		}
		defer done()
	}
	if err := identity.Save(backupDir, k); err != nil {
		return false, fmt.Errorf("identity backup: %w", err)
	}
	return true, nil
}
