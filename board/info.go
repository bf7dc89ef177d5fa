package board

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Root is where a board's files live; tests point it at a fake tree.
type Root struct {
	Proc string // "/proc"
	Sys  string // "/sys"
	Dev  string // "/dev"
}

// SystemRoot is the real machine.
var SystemRoot = Root{Proc: "/proc", Sys: "/sys", Dev: "/dev"}

// RootAt is a fake tree with proc, sys and dev below dir.
func RootAt(dir string) Root {
	return Root{Proc: filepath.Join(dir, "proc"), Sys: filepath.Join(dir, "sys"), Dev: filepath.Join(dir, "dev")}
}

// dtStrings reads a device-tree property: NUL-separated strings.
func dtStrings(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range bytes.Split(b, []byte{0}) {
		if len(s) > 0 {
			out = append(out, string(s))
		}
	}
	return out
}

// BoardName maps a device tree's compatible list to our board names.
func BoardName(compatible []string) string {
	for _, c := range compatible {
		switch {
		case strings.HasPrefix(c, "raspberrypi,3-model-b"):
			return "rpi3"
		case c == "raspberrypi,4-model-b":
			return "rpi4"
		case c == "linux,dummy-virt":
			return "qemu-virt"
		}
	}
	return "sim"
}

// ReadInfo identifies the board from the device tree (and /proc/cpuinfo for
// the serial on kernels that do not expose serial-number).
func ReadInfo(r Root) Info {
	dt := filepath.Join(r.Proc, "device-tree")
	in := Info{Name: BoardName(dtStrings(filepath.Join(dt, "compatible")))}
	if m := dtStrings(filepath.Join(dt, "model")); len(m) > 0 {
		in.Model = strings.TrimSpace(m[0])
	}
	if s := dtStrings(filepath.Join(dt, "serial-number")); len(s) > 0 {
		in.Serial = strings.TrimSpace(s[0])
	}
	if in.Serial == "" || in.Model == "" {
		cs, cm := cpuinfo(filepath.Join(r.Proc, "cpuinfo"))
		if in.Serial == "" {
			in.Serial = cs
		}
		if in.Model == "" {
			in.Model = cm
		}
	}
	if in.Model == "" && in.Name == "qemu-virt" {
		in.Model = "QEMU virt"
	}
	return in
}

func cpuinfo(path string) (serial, model string) {
	f, err := os.Open(path)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "Serial":
			serial = strings.TrimSpace(v)
		case "Model":
			model = strings.TrimSpace(v)
		}
	}
	return serial, model
}

// ReadTemperature reads thermal zone 0 (millidegrees Celsius).
func ReadTemperature(r Root) (float64, bool) {
	b, err := os.ReadFile(filepath.Join(r.Sys, "class", "thermal", "thermal_zone0", "temp"))
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, false
	}
	return float64(v) / 1000, true
}
