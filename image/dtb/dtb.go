// Package dtb adjusts a board device tree for a QEMU boot with the host's
// fdtput (device-tree-compiler).
package dtb

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Options are the tweaks to apply.
type Options struct {
	// RNGSeed puts 64 random bytes into /chosen/rng-seed: without it the
	// guest's getrandom blocks for 15-25 s under QEMU raspi3b.
	RNGSeed bool
	// TestLED points /leds/led-act at SoC GPIO 47. The Pi 3's ACT LED sits
	// on the firmware GPIO expander QEMU does not emulate; on GPIO 47 the
	// leds-gpio driver binds and /sys/class/leds/ACT appears.
	TestLED bool
}

// ActLEDGPIO is the SoC GPIO the test DTB drives the ACT LED with.
const ActLEDGPIO = 47

// Tweak copies src to dst and applies opts.
func Tweak(src, dst string, opts Options) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("dtb: %w", err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return fmt.Errorf("dtb: %w", err)
	}
	if opts.RNGSeed {
		seed := make([]byte, 64)
		if _, err := rand.Read(seed); err != nil {
			return err
		}
		args := []string{"-t", "bx", dst, "/chosen", "rng-seed"}
		for _, c := range seed {
			args = append(args, fmt.Sprintf("%02x", c))
		}
		if err := fdt("fdtput", args...); err != nil {
			return err
		}
	}
	if opts.TestLED {
		out, err := fdtOut("fdtget", "-t", "x", dst, "/soc/gpio@7e200000", "phandle")
		if err != nil {
			return err
		}
		ph, err := strconv.ParseUint(strings.TrimSpace(out), 16, 32)
		if err != nil {
			return fmt.Errorf("dtb: gpio phandle %q: %w", out, err)
		}
		if err := fdt("fdtput", "-t", "u", dst, "/leds/led-act", "gpios",
			strconv.FormatUint(ph, 10), strconv.Itoa(ActLEDGPIO), "0"); err != nil {
			return err
		}
	}
	return nil
}

func fdt(tool string, args ...string) error {
	_, err := fdtOut(tool, args...)
	return err
}

func fdtOut(tool string, args ...string) (string, error) {
	if _, err := exec.LookPath(tool); err != nil {
		return "", fmt.Errorf("dtb: %s not found (install device-tree-compiler: make deps)", tool)
	}
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dtb: %s %s: %w: %s", tool, strings.Join(args[:min(len(args), 4)], " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
