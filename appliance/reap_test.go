package appliance

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		in    string
		state byte
		ppid  int
		ok    bool
	}{
		{"123 (sleep) Z 1 123 123 0 -1", 'Z', 1, true},
		{"77 (we ird) (x)) S 42 77 77", 'S', 42, true},
		{"garbage", 0, 0, false},
	}
	for _, tc := range tests {
		s, p, ok := parseStat([]byte(tc.in))
		if s != tc.state || p != tc.ppid || ok != tc.ok {
			t.Errorf("parseStat(%q) = %c %d %v", tc.in, s, p, ok)
		}
	}
}

// An orphan-like child (not started by os/exec) is reaped, while a child
// run through the reaper keeps its exit code.
func TestReaperKeepsExecExitCodes(t *testing.T) {
	r := newReaper(nil)
	pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{Files: []uintptr{0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until it is a zombie.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + itoa(pid) + "/stat")
		if s, _, ok := parseStat(b); ok && s == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child never became a zombie")
		}
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- r.run(exec.Command("/bin/sh", "-c", "sleep 0.2; exit 3")) }()
	// Reap continuously while the tracked child runs and exits.
	reaped := 0
	for err == nil {
		select {
		case err = <-done:
			if err == nil {
				t.Fatal("tracked child reported success, want exit status 3")
			}
		default:
			reaped += r.reapOnce()
			time.Sleep(5 * time.Millisecond)
		}
	}
	if reaped != 1 {
		t.Fatalf("reaped %d untracked zombies, want 1", reaped)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("tracked child error %v, want exit status 3 (not stolen by the reaper)", err)
	}
	if _, err := os.Stat("/proc/" + itoa(pid)); !os.IsNotExist(err) {
		t.Errorf("zombie %d still present after reaping", pid)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
