package appliance

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// ModulesLoadList is the initramfs's ordered module list (contract (e)):
// one path per line relative to /lib/modules/<kver>/, dependencies and soft
// dependencies first, resolved when the image was built (nothing here can
// follow softdeps or autoload).
const ModulesLoadList = "etc/snodebox/modules.load"

// loadModules loads every listed module in order; a module already present
// (EEXIST, built in or loaded before) counts as loaded, a failure is logged
// and the boot goes on. It returns how many are loaded.
func loadModules(root string, log *slog.Logger) (loaded int, err error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return 0, fmt.Errorf("uname: %w", err)
	}
	kver := unix.ByteSliceToString(uts.Release[:])
	list := filepath.Join(root, ModulesLoadList)
	f, err := os.Open(list)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("module list: %w", err)
	}
	defer f.Close()
	dir := filepath.Join(root, "lib/modules", kver)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rel := strings.TrimSpace(sc.Text())
		if rel == "" || strings.HasPrefix(rel, "#") {
			continue
		}
		path := filepath.Join(dir, rel)
		if err := loadModule(path); err != nil {
			log.Warn("load module", "module", rel, "err", err)
			continue
		}
		loaded++
	}
	return loaded, sc.Err()
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = kmodule.FileInit(f, "", 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}
