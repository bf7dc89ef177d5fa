package appliance

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/snodebox/snodebox/netstack/identity"
)

func TestIdentityBackupAndRestore(t *testing.T) {
	root := t.TempDir()
	keyDir := filepath.Join(root, "data", "keys")
	backup := filepath.Join(root, "boot", KeyBackupDir)
	k, _, err := identity.Load(keyDir) // first boot creates the identity
	if err != nil {
		t.Fatal(err)
	}

	writes := 0
	prepare := func() (func(), error) { writes++; return func() {}, nil }
	if wrote, err := backupKeys(keyDir, backup, prepare); err != nil || !wrote || writes != 1 {
		t.Fatalf("first backup: wrote %v err %v prepares %d", wrote, err, writes)
	}
	st, err := os.Stat(filepath.Join(backup, identity.SeedFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file %v mode %v, want 0600", err, st.Mode())
	}
	// Unchanged keys: the boot partition is not touched again.
	if wrote, err := backupKeys(keyDir, backup, prepare); err != nil || wrote || writes != 1 {
		t.Fatalf("second backup: wrote %v err %v prepares %d (must not write)", wrote, err, writes)
	}

	// Keys present: restore leaves them alone.
	if ok, err := restoreKeys(backup, keyDir); ok || err != nil {
		t.Fatalf("restore over existing keys: %v %v", ok, err)
	}
	// Factory reset: the data partition is new, the backup brings the identity back.
	os.RemoveAll(filepath.Join(root, "data"))
	if ok, err := restoreKeys(backup, keyDir); !ok || err != nil {
		t.Fatalf("restore after reset: %v %v", ok, err)
	}
	got, created, err := identity.Load(keyDir)
	if err != nil || created || !identity.SameKeys(got, k) {
		t.Fatalf("identity after restore differs (created %v, err %v)", created, err)
	}
	// No backup (QEMU: no boot partition): nothing restored, no error.
	os.RemoveAll(filepath.Join(root, "data"))
	if ok, err := restoreKeys(filepath.Join(root, "none"), keyDir); ok || err != nil {
		t.Fatalf("restore without backup: %v %v", ok, err)
	}
	// A corrupt backup is an error, not a new identity.
	os.WriteFile(filepath.Join(backup, identity.SeedFile), []byte("short"), 0o600)
	if ok, err := restoreKeys(backup, keyDir); ok || err == nil {
		t.Fatalf("corrupt backup restored: %v %v", ok, err)
	}
	// A failing remount keeps the old backup and reports why.
	identity.Load(keyDir)
	fail := func() (func(), error) { return nil, errors.New("read-only") }
	if _, err := backupKeys(keyDir, backup, fail); err == nil {
		t.Fatal("backup without a writable boot partition reported success")
	}
}
