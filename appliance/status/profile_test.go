package status

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
)

func profileRequest(remote, query string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", ProfilePath+query, nil)
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	CPUProfile().ServeHTTP(w, r)
	return w
}

// A profile is what `go tool pprof` reads: a gzipped protobuf whose string
// table names the functions that ran.
func TestCPUProfileIsAProfileOfThisProcess(t *testing.T) {
	stop := make(chan struct{})
	var spun sync.WaitGroup
	spun.Add(1)
	go func() {
		defer spun.Done()
		for x := 0; ; x++ {
			select {
			case <-stop:
				return
			default:
				spinForProfile(x)
			}
		}
	}()
	w := profileRequest("127.0.0.1:5555", "?seconds=1")
	close(stop)
	spun.Wait()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatalf("profile is not gzipped: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("spinForProfile")) {
		t.Errorf("a second's profile of a busy loop does not name it (%d bytes)", len(raw))
	}
}

//go:noinline
func spinForProfile(x int) int {
	s := 0
	for i := range 10_000 {
		s += i ^ x
	}
	return s
}

func TestCPUProfileRefusals(t *testing.T) {
	for _, c := range []struct {
		name, remote, query string
		code                int
		says                string
	}{
		{"from the LAN", "192.168.1.20:4000", "?seconds=1", http.StatusForbidden, "this host only"},
		{"from anywhere", "203.0.113.9:4000", "", http.StatusForbidden, "this host only"},
		{"zero seconds", "127.0.0.1:4000", "?seconds=0", http.StatusBadRequest, "1 to 120"},
		{"too long", "[::1]:4000", "?seconds=121", http.StatusBadRequest, "1 to 120"},
		{"not a number", "127.0.0.1:4000", "?seconds=ten", http.StatusBadRequest, "whole number"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := profileRequest(c.remote, c.query)
			if w.Code != c.code || !strings.Contains(w.Body.String(), c.says) {
				t.Errorf("status %d %q, want %d saying %q", w.Code, w.Body, c.code, c.says)
			}
		})
	}
}

func TestCPUProfileOneAtATime(t *testing.T) {
	// Another profile of the process is running (one the test started,
	// as a concurrent request's would be).
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		t.Fatal(err)
	}
	w := profileRequest("127.0.0.1:4000", "?seconds=1")
	pprof.StopCPUProfile()
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "already running") {
		t.Errorf("a profile while another runs: status %d %q, want 409", w.Code, w.Body)
	}
	if w := profileRequest("127.0.0.1:4000", "?seconds=1"); w.Code != http.StatusOK {
		t.Errorf("a profile once the other stopped: status %d %q", w.Code, w.Body)
	}
}
