package assemble

import (
	"debug/elf"
	"fmt"
)

// elfArm64Static checks that the init binary can run as PID 1 of an arm64
// initramfs with no loader: aarch64 and without a program interpreter.
func elfArm64Static(path string) (bool, bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, false, fmt.Errorf("snoded %s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		return false, false, fmt.Errorf("snoded %s: built for %v, want arm64 (GOARCH=arm64)", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true, false, fmt.Errorf("snoded %s: dynamically linked; build with CGO_ENABLED=0", path)
		}
	}
	return true, true, nil
}
