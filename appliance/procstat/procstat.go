// Package procstat reads the figures Linux keeps in /proc about memory and
// CPU time: the status page shows the node's resident memory and the
// system's totals from here, and the benchmarks report the same figures.
package procstat

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Self in place of a process id means the calling process.
const Self = 0

// Status reads a "Name:  N kB" field of /proc/PID/status (VmRSS, RssAnon,
// RssFile, VmHWM, ...) in bytes.
func Status(pid int, field string) (uint64, error) {
	path := "/proc/self/status"
	if pid != Self {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	return kBField(path, field)
}

// MemInfo reads a field of /proc/meminfo (MemTotal, MemAvailable, ...) in
// bytes.
func MemInfo(field string) (uint64, error) { return kBField("/proc/meminfo", field) }

// kBField finds "field:" in a /proc file of "Name:   N kB" lines.
func kBField(path, field string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s %s: %w", path, field, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return 0, fmt.Errorf("%s: no %s field", path, field)
}

// CPUTime is the user+system CPU time process pid has used: fields 14 and
// 15 of /proc/PID/stat, in USER_HZ ticks (fixed at 100 on Linux). The fields
// are counted after the command name, which is in parentheses and may
// itself hold spaces or parentheses.
func CPUTime(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid != Self {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	d, err := parseCPU(string(raw))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

func parseCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	// After the name: state is field 3, utime 14, stime 15.
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q stime %q", f[11], f[12])
	}
	const userHZ = 100
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// MiB is a byte count in MiB for a benchmark figure, -1 when it could not
// be read (so a missing figure shows, instead of a plausible zero):
// b.ReportMetric(procstat.MiB(procstat.Status(pid, "VmRSS")), "VmRSS_MiB").
func MiB(bytes uint64, err error) float64 {
	if err != nil {
		return -1
	}
	return float64(bytes) / (1 << 20)
}
