// Package benchprof takes CPU profiles of a node while a benchmark loads it,
// through the status address of `snoded run --pprof`, and prints where the
// time went beside the figures: `make bench PPROF=dir` answers "how much
// CPU per store, and on what" without a patched binary. Benchmarks only.
package benchprof

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/snodebox/snodebox/appliance/status"
)

// DirEnv names the directory profiles go to; unset, nothing is profiled
// (the profiler costs a few percent of the CPU it measures).
const DirEnv = "SNODEBOX_PPROF_DIR"

// Dir is the profile directory the run asked for, or "".
func Dir() string { return os.Getenv(DirEnv) }

// Start begins a CPU profile of secs seconds of the node whose status page
// listens on statusAddr (host:port), if Dir is set. The returned func waits
// for it, writes it to Dir/name.pprof and prints the call paths that took
// most (go tool pprof -top -cum), to stdout: go test keeps only the first
// 10 lines a benchmark logs, and the figures are among them. A load that
// ends before secs leaves idle time in the profile; its total samples show
// that.
func Start(statusAddr, name string, secs int) (wait func()) {
	dir := Dir()
	if dir == "" {
		return func() {}
	}
	type result struct {
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s%s?seconds=%d", statusAddr, status.ProfilePath, secs))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		done <- result{body, err}
	}()
	return func() {
		r := <-done
		path := filepath.Join(dir, name+".pprof")
		err := r.err
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err == nil {
			err = os.WriteFile(path, r.body, 0o644)
		}
		if err != nil {
			fmt.Printf("CPU profile %s: %v\n", name, err)
			return
		}
		top, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=40", path).CombinedOutput()
		if err != nil {
			fmt.Printf("CPU profile %s written to %s (go tool pprof: %v)\n", name, path, err)
			return
		}
		fmt.Printf("== CPU profile of %s (first %d s of the load): %s\n%s\n", name, secs, path, top)
	}
}
