package benchprof

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snodebox/snodebox/appliance/status"
)

func TestNothingWithoutADirectory(t *testing.T) {
	t.Setenv(DirEnv, "")
	asked := false
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { asked = true }))
	defer srv.Close()
	Start(strings.TrimPrefix(srv.URL, "http://"), "node", 1)()
	if asked {
		t.Error("a profile was asked for with no directory set")
	}
}

// With a directory, the node's profile lands in it under the load's name.
func TestProfileLandsInTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pprof")
	t.Setenv(DirEnv, dir)
	mux := http.NewServeMux()
	mux.Handle("GET "+status.ProfilePath, status.CPUProfile())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	Start(strings.TrimPrefix(srv.URL, "http://"), "store16", 1)()
	b, err := os.ReadFile(filepath.Join(dir, "store16.pprof"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("store16.pprof is %d bytes and not a gzipped profile", len(b))
	}
	// A node that refuses writes no file.
	Start(strings.TrimPrefix(srv.URL, "http://")+"/nowhere", "refused", 1)()
	if _, err := os.Stat(filepath.Join(dir, "refused.pprof")); err == nil {
		t.Error("a refused profile left a file")
	}
}
