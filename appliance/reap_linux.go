package appliance

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// reaper collects orphans re-parented to PID 1 without stealing exit codes
// from os/exec: children started through run are registered (under the same
// lock the reaper scans with, so none can exit unregistered) and skipped;
// every other zombie child is waited for by pid. A blanket wait4(-1) would
// race cmd.Wait and make it fail with ECHILD.
type reaper struct {
	mu      sync.Mutex
	tracked map[int]bool
	proc    string // /proc
	self    int    // our pid (1 on the device)
	log     *slog.Logger
}

func newReaper(log *slog.Logger) *reaper {
	return &reaper{tracked: map[int]bool{}, proc: "/proc", self: os.Getpid(), log: log}
}

// run starts cmd as a tracked child and waits for it.
func (r *reaper) run(cmd *exec.Cmd) error {
	r.mu.Lock()
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		return err
	}
	r.tracked[cmd.Process.Pid] = true
	r.mu.Unlock()
	err := cmd.Wait()
	r.mu.Lock()
	delete(r.tracked, cmd.Process.Pid)
	r.mu.Unlock()
	return err
}

// output runs a tool and returns its combined output with the error.
func (r *reaper) output(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := r.run(cmd)
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s %v: %w: %s", filepath.Base(name), args, err, bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}

// reapOnce waits for every zombie child that os/exec does not own and
// returns how many it collected.
func (r *reaper) reapOnce() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	ents, err := os.ReadDir(r.proc)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || r.tracked[pid] {
			continue
		}
		st, err := os.ReadFile(filepath.Join(r.proc, e.Name(), "stat"))
		if err != nil {
			continue
		}
		state, ppid, ok := parseStat(st)
		if !ok || ppid != r.self || state != 'Z' {
			continue
		}
		var ws unix.WaitStatus
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil && got == pid {
			n++
			if r.log != nil {
				r.log.Debug("reaped orphan", "pid", pid, "status", ws.ExitStatus())
			}
		}
	}
	return n
}

// parseStat reads state and ppid from /proc/PID/stat; the command name is
// in parentheses and may itself contain spaces or parentheses.
func parseStat(b []byte) (state byte, ppid int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+4 > len(b) {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	p, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], p, true
}
