package status

import (
	"bytes"
	"net/http"
	"runtime/pprof"
	"strconv"
	"time"
)

// ProfilePath is where CPUProfile answers: the path and query of Go's
// net/http/pprof, so `go tool pprof http://127.0.0.1:8080/debug/pprof/profile?seconds=5`
// reads a node's profile as it reads any Go server's.
const ProfilePath = "/debug/pprof/profile"

// MaxProfileSeconds bounds one profile: a longer one is a typo, and the
// profiler costs a few percent of the CPU while it runs.
const MaxProfileSeconds = 120

// CPUProfile serves GET ProfilePath?seconds=N (default 10): a CPU profile
// of this process over the next N seconds, gzipped protobuf as `go tool
// pprof` reads it. It answers loopback clients only, whatever the status
// page's own policy: a profile shows where the node spends its time and
// costs CPU while it runs. One profile runs at a time; a second request
// meanwhile gets 409.
//
// runtime/pprof alone rather than net/http/pprof: that package registers
// on http.DefaultServeMux when imported, and its heap and allocation
// endpoints answer nothing useful from a node that keeps no allocation
// samples (snoded sets MemProfileRate to 0).
func CPUProfile() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackAddr(r.RemoteAddr) {
			http.Error(w, "403 forbidden: profiles are served to this host only", http.StatusForbidden)
			return
		}
		secs := 10
		if s := r.URL.Query().Get("seconds"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxProfileSeconds {
				http.Error(w, "seconds must be a whole number from 1 to "+strconv.Itoa(MaxProfileSeconds), http.StatusBadRequest)
				return
			}
			secs = n
		}
		// Buffered, so a failure to start still gets its own status.
		var buf bytes.Buffer
		if err := pprof.StartCPUProfile(&buf); err != nil {
			http.Error(w, "a CPU profile is already running: "+err.Error(), http.StatusConflict)
			return
		}
		t := time.NewTimer(time.Duration(secs) * time.Second)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
		pprof.StopCPUProfile()
		if r.Context().Err() != nil {
			return // the client left; nobody reads the profile
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="cpu.pprof"`)
		w.Header().Set("Cache-Control", "no-store")
		w.Write(buf.Bytes())
	})
}

// loopbackAddr reports whether a "host:port" is this host.
func loopbackAddr(remote string) bool {
	a, ok := clientIP(remote)
	return ok && a.IsLoopback()
}
