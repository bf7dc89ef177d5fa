package appliance

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A module list with a missing module and a file the kernel refuses: both
// are logged and the boot goes on; comments and blank lines are skipped.
func TestLoadModulesGoesOnAfterFailures(t *testing.T) {
	var uts unix.Utsname
	unix.Uname(&uts)
	kver := unix.ByteSliceToString(uts.Release[:])
	root := t.TempDir()
	dir := filepath.Join(root, "lib/modules", kver, "kernel/fs")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "garbage.ko"), []byte("not an ELF module"), 0o644)
	os.MkdirAll(filepath.Join(root, "etc/snodebox"), 0o755)
	os.WriteFile(filepath.Join(root, ModulesLoadList), []byte("# closure for test\n\nkernel/fs/missing.ko\nkernel/fs/garbage.ko\n"), 0o644)
	var logs bytes.Buffer
	n, err := loadModules(root, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || n != 0 {
		t.Fatalf("loadModules = %d, %v; want 0 loaded, no error", n, err)
	}
	for _, m := range []string{"kernel/fs/missing.ko", "kernel/fs/garbage.ko"} {
		if !strings.Contains(logs.String(), m) {
			t.Errorf("failure of %s not logged:\n%s", m, logs.String())
		}
	}
	if strings.Contains(logs.String(), "closure for test") {
		t.Error("a comment line was treated as a module")
	}
	// No list at all (hosted, or an image without modules): nothing to do.
	if n, err := loadModules(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil))); n != 0 || err != nil {
		t.Errorf("without a list: %d, %v", n, err)
	}
}

func TestMarkersAreWholeLines(t *testing.T) {
	var buf bytes.Buffer
	c := &console{w: &buf}
	c.mark("data mounted dev=%s formatted=%v grown=%v", "/dev/vda1", true, false)
	lockedWriter{c}.Write([]byte("time=x level=INFO msg=hi\n"))
	c.mark("clock synced=%v", false)
	want := "snodebox: data mounted dev=/dev/vda1 formatted=true grown=false\ntime=x level=INFO msg=hi\nsnodebox: clock synced=false\n"
	if buf.String() != want {
		t.Errorf("console:\n%s\nwant:\n%s", buf.String(), want)
	}
}
