package status

import (
	"bytes"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/snodebox/snodebox/board/sim"
)

// chromium renders the page the way a user's browser does: the test reads
// the DOM after layout and scripts ran, not the template's text.
func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed; the status page is checked in a real headless browser: run `make deps` (scripts/install-deps.sh installs Debian's chromium)")
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir()}
	cmd := exec.Command(bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// elementText is the text inside the element with the given id in a DOM dump.
func elementText(t *testing.T, dom, id string) string {
	t.Helper()
	re := regexp.MustCompile(`(?s)<[a-z0-9]+[^>]*\bid="` + regexp.QuoteMeta(id) + `"[^>]*>(.*?)</`)
	m := re.FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no element #%s in the rendered DOM", id)
	}
	return strings.TrimSpace(m[1])
}

func TestPageInHeadlessBrowser(t *testing.T) {
	unhealthy := sampleReport()
	healthy := sampleReport()
	healthy.Healthy, healthy.Reasons, healthy.LED = true, nil, "healthy"

	for _, tc := range []struct {
		name   string
		report Report
		state  string
	}{
		{"unhealthy", unhealthy, "Not healthy"},
		{"healthy", healthy, "Healthy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(Handler(SourceFunc(func() Report { return tc.report }), sim.New()))
			defer srv.Close()

			dom := string(chromium(t, "--dump-dom", srv.URL+"/"))
			if got := elementText(t, dom, "health-state"); got != tc.state {
				t.Errorf("health state %q, want %q", got, tc.state)
			}
			if got := elementText(t, dom, "ed25519"); got != testEd {
				t.Errorf("ed25519 key %q, want %q", got, testEd)
			}
			if got := elementText(t, dom, "x25519"); got != testX {
				t.Errorf("x25519 key %q, want %q", got, testX)
			}
			// The inline script ran under the page's CSP: copy buttons show.
			if !strings.Contains(dom, `data-copy="ed25519">Copy</button>`) || strings.Contains(dom, `data-copy="ed25519" hidden`) {
				t.Error("copy buttons still hidden: the inline script did not run")
			}
			if tc.report.Healthy {
				if strings.Contains(dom, `id="reasons"`) {
					t.Error("healthy page lists reasons")
				}
			} else {
				m := regexp.MustCompile(`(?s)id="reasons">(.*?)</ul>`).FindStringSubmatch(dom)
				if m == nil {
					t.Fatal("no reasons list in the rendered DOM")
				}
				reasons := m[1]
				if !strings.Contains(reasons, "not in a swarm yet") || !strings.Contains(reasons, "&lt;script&gt;") {
					t.Errorf("reasons %q", reasons)
				}
				if strings.Contains(dom, "<script>alert") {
					t.Error("a reason became markup in the browser")
				}
			}

			if tc.report.Healthy {
				return // one screenshot is enough to show the page renders
			}
			shot := filepath.Join(t.TempDir(), "status.png")
			chromium(t, "--hide-scrollbars", "--window-size=1100,1600", "--screenshot="+shot, srv.URL+"/")
			png, err := os.ReadFile(shot)
			if err != nil {
				t.Fatalf("screenshot: %v", err)
			}
			if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10_000 {
				t.Fatalf("screenshot is not a rendered page (%d bytes)", len(png))
			}
			if dir := os.Getenv("SNODEBOX_SCREENSHOTS"); dir != "" {
				os.WriteFile(filepath.Join(dir, "status-"+tc.name+".png"), png, 0o644)
			}
		})
	}
}
