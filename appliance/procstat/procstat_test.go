package procstat

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKBFieldReadsNamedLineInBytes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "status")
	os.WriteFile(p, []byte("Name:\tsnoded\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nRssAnon:\t    8192 kB\nThreads:\t12\n"), 0o644)
	for _, tc := range []struct {
		field string
		want  uint64
		ok    bool
	}{
		{"VmRSS", 40 << 20, true},
		{"VmHWM", 50 << 20, true},
		{"RssAnon", 8 << 20, true},
		{"Rss", 0, false}, // a prefix of a field is not the field
		{"RssFile", 0, false},
		{"Name", 0, false},
	} {
		got, err := kBField(p, tc.field)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("kBField(%s) = %d, %v; want %d ok=%v", tc.field, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseCPUCountsFieldsAfterTheCommandName(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       time.Duration
		ok         bool
	}{
		{"plain", "42 (snoded) S 1 42 42 0 -1 4194560 900 0 0 0 250 130 0 0 20 0 9 0 100 0 0", 3800 * time.Millisecond, true},
		{"spaces and parentheses in the name", "42 (a) b (c) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0", 100 * time.Millisecond, true},
		{"truncated", "42 (snoded) S 1 42", 0, false},
		{"no name", "42 snoded S", 0, false},
	} {
		got, err := parseCPU(tc.stat)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: parseCPU = %v, %v; want %v ok=%v", tc.name, got, err, tc.want, tc.ok)
		}
	}
}

func TestThisProcessAndSystem(t *testing.T) {
	rss, err := Status(Self, "VmRSS")
	if err != nil || rss == 0 {
		t.Fatalf("VmRSS of this process = %d, %v", rss, err)
	}
	if byPID, err := Status(os.Getpid(), "VmHWM"); err != nil || byPID < rss {
		t.Errorf("VmHWM by pid = %d, %v; want at least VmRSS %d", byPID, err, rss)
	}
	total, err1 := MemInfo("MemTotal")
	avail, err2 := MemInfo("MemAvailable")
	if err1 != nil || err2 != nil || avail == 0 || avail > total || rss > total {
		t.Errorf("MemTotal %d (%v), MemAvailable %d (%v), VmRSS %d", total, err1, avail, err2, rss)
	}
	// Burn CPU until the tick counter (10 ms ticks) moves forward.
	before, err := CPUTime(Self)
	if err != nil {
		t.Fatal(err)
	}
	after, x := before, 0
	for after == before && err == nil {
		for i := range 1_000_000 {
			x += i
		}
		after, err = CPUTime(os.Getpid())
	}
	if err != nil || after < before || x == 0 {
		t.Errorf("CPU time went from %v to %v (%v)", before, after, err)
	}
	if _, err := Status(1<<30, "VmRSS"); err == nil {
		t.Error("a process that does not exist has a VmRSS")
	}
}

func TestMiBMarksUnreadableFigures(t *testing.T) {
	if got := MiB(3<<20, nil); got != 3 {
		t.Errorf("MiB(3 MiB) = %v", got)
	}
	if got := MiB(3<<20, os.ErrNotExist); got != -1 {
		t.Errorf("MiB with an error = %v, want -1", got)
	}
}
