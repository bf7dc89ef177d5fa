package appliance

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/appliance/node/nodetest"
	"github.com/snodebox/snodebox/appliance/status"
	"github.com/snodebox/snodebox/board"
	"github.com/snodebox/snodebox/board/sim"
	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/rpc"
)

type hostedRun struct {
	app  *app
	done chan error
	data string
	stat string
	stop context.CancelFunc
}

func startHosted(t *testing.T, b board.Board, opts ...func(*HostedConfig)) *hostedRun {
	t.Helper()
	h := &hostedRun{done: make(chan error, 1), data: t.TempDir(), stat: nodetest.FreeAddr(t)}
	started := make(chan *app, 1)
	cfg := HostedConfig{
		Node: node.Config{
			DataDir: h.data, Listen: nodetest.FreeAddr(t), StatusListen: h.stat,
			RateLimit: rpc.RateLimit{Disabled: true},
		},
		Board:          b,
		LogOutput:      io.Discard,
		HealthInterval: 1,
		onStart:        func(a *app) { started <- a },
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() { h.done <- runHosted(ctx, cfg) }()
	select {
	case h.app = <-started:
	case err := <-h.done:
		t.Fatalf("runHosted ended early: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		<-h.done
	})
	nodetest.Until(t, "node running", func() bool { n, _ := h.app.current(); return n != nil })
	return h
}

func (h *hostedRun) gens() int {
	h.app.mu.Lock()
	defer h.app.mu.Unlock()
	return h.app.gens
}

func (h *hostedRun) resets() int {
	h.app.mu.Lock()
	defer h.app.mu.Unlock()
	return h.app.resets
}

func (h *hostedRun) identity() string {
	n, _ := h.app.current()
	if n == nil {
		return ""
	}
	return n.Keys.Ed25519Hex()
}

func (h *hostedRun) logged(substr string) bool {
	for _, l := range h.app.ring.Lines() {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

func TestHostedStatusAndLED(t *testing.T) {
	b := sim.New()
	h := startHosted(t, b)
	nodetest.Until(t, "LED healthy", func() bool { return b.LED() == board.LEDHealthy })
	resp, err := http.Get("http://" + h.stat + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var top map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&top); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"healthy", "reasons", "ed25519", "swarm_members", "led", "services", "memory", "logs"} {
		if _, ok := top[k]; !ok {
			t.Errorf("/status.json lacks top-level %q", k)
		}
	}
	if string(top["healthy"]) != "true" || string(top["led"]) != `"healthy"` {
		t.Errorf("healthy=%s led=%s, want a healthy hosted node", top["healthy"], top["led"])
	}
	var hist []string
	for _, c := range b.History() {
		hist = append(hist, c.State.String())
	}
	if hist[0] != "booting" || hist[len(hist)-1] != "healthy" {
		t.Errorf("LED history %v: want booting first and healthy last", hist)
	}
}

func TestButtonShortPressLogsStatus(t *testing.T) {
	b := sim.New()
	h := startHosted(t, b)
	if a, ok := b.Press(300 * time.Millisecond); !ok || a != board.ActionStatus {
		t.Fatalf("short press gave %v %v", a, ok)
	}
	nodetest.Until(t, "status logged", func() bool { return h.logged("msg=status code=") })
	if h.gens() != 1 {
		t.Errorf("a status press restarted the node (%d generations)", h.gens())
	}
}

func TestButtonHoldRebootsServices(t *testing.T) {
	b := sim.New()
	h := startHosted(t, b)
	id := h.identity()
	if a, ok := b.Press(6 * time.Second); !ok || a != board.ActionReboot {
		t.Fatalf("6 s hold gave %v %v", a, ok)
	}
	nodetest.Until(t, "second generation running", func() bool { n, _ := h.app.current(); return h.gens() == 2 && n != nil })
	if got := h.identity(); got != id {
		t.Errorf("identity changed across a reboot: %s → %s", id, got)
	}
	nodetest.Until(t, "healthy again", func() bool { return b.LED() == board.LEDHealthy })
}

func TestButtonFactoryResetKeepsKeys(t *testing.T) {
	b := sim.New()
	h := startHosted(t, b)
	id := h.identity()
	junk := filepath.Join(h.data, "junk")
	os.WriteFile(junk, []byte("x"), 0o644)
	if _, ok := b.Press(16 * time.Second); ok {
		t.Fatal("a 16 s hold must only arm the reset")
	}
	if a, ok := b.Press(200 * time.Millisecond); !ok || a != board.ActionFactoryReset {
		t.Fatalf("confirming press gave %v %v, want factory-reset", a, ok)
	}
	nodetest.Until(t, "reset done and node back", func() bool { n, _ := h.app.current(); return h.resets() == 1 && n != nil })
	if _, err := os.Stat(junk); !os.IsNotExist(err) {
		t.Errorf("data survived the factory reset: %v", err)
	}
	if got := h.identity(); got != id {
		t.Errorf("factory reset changed the identity: %s → %s", id, got)
	}
	if _, err := os.Stat(filepath.Join(h.data, "messages.db")); err != nil {
		t.Errorf("no fresh database after the reset: %v", err)
	}
}

// clockBoard is the simulated board with the button decoded on a clock the
// test moves, to press "too late" without waiting 10 s.
type clockBoard struct {
	*sim.Board
	mu      sync.Mutex
	now     time.Time
	g       *board.Gestures
	actions chan board.Action
}

func newClockBoard() *clockBoard {
	c := &clockBoard{Board: sim.New(), now: time.Unix(1_800_000_000, 0), actions: make(chan board.Action, 4)}
	c.g = &board.Gestures{Clock: func() time.Time { return c.now }}
	return c
}

func (c *clockBoard) Actions() <-chan board.Action { return c.actions }

func (c *clockBoard) press(hold time.Duration) (board.Action, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.g.Press()
	c.now = c.now.Add(hold)
	a, ok := c.g.Release()
	if ok {
		c.actions <- a
	}
	return a, ok
}

func (c *clockBoard) wait(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func TestFactoryResetNeedsTimelyConfirmation(t *testing.T) {
	b := newClockBoard()
	h := startHosted(t, b)
	junk := filepath.Join(h.data, "junk")
	os.WriteFile(junk, []byte("x"), 0o644)
	b.press(16 * time.Second)
	b.wait(11 * time.Second) // the confirming press comes too late
	a, ok := b.press(200 * time.Millisecond)
	if !ok || a != board.ActionStatus {
		t.Fatalf("late press gave %v %v, want a plain status press", a, ok)
	}
	nodetest.Until(t, "status logged", func() bool { return h.logged("msg=status code=") })
	if h.resets() != 0 {
		t.Fatal("factory reset ran after a late confirmation")
	}
	if _, err := os.Stat(junk); err != nil {
		t.Errorf("data lost without a reset: %v", err)
	}
	// In time, the same board does reset.
	b.press(16 * time.Second)
	b.wait(9 * time.Second)
	if a, ok := b.press(200 * time.Millisecond); !ok || a != board.ActionFactoryReset {
		t.Fatalf("timely press gave %v %v", a, ok)
	}
	nodetest.Until(t, "reset", func() bool { return h.resets() == 1 })
}

func TestPowerKeyStopsHostedNode(t *testing.T) {
	b := sim.New()
	h := startHosted(t, b)
	b.PowerKey()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("runHosted after power key: %v", err)
		}
		h.done <- nil // for the cleanup
	case <-time.After(60 * time.Second):
		t.Fatal("power key did not stop the hosted node")
	}
}

func TestStatusPressThroughAPI(t *testing.T) {
	b := sim.New()
	h := startHosted(t, b)
	// The page's token, as the page's script sends it.
	page, err := http.Get("http://" + h.stat + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	m := regexp.MustCompile(`data-token="([0-9a-f]+)"`).FindSubmatch(body)
	if m == nil {
		t.Fatal("status page shows no button token")
	}
	req, _ := http.NewRequest("POST", "http://"+h.stat+"/api/button", strings.NewReader(`{"hold_ms": 6000}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(status.TokenHeader, string(m[1]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("press: %s", resp.Status)
	}
	resp.Body.Close()
	nodetest.Until(t, "restart through the status API", func() bool { return h.gens() == 2 })
}

func TestWipeExceptKeys(t *testing.T) {
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "keys"), 0o700)
	os.WriteFile(filepath.Join(d, "keys", "ed25519.seed"), make([]byte, 32), 0o600)
	os.WriteFile(filepath.Join(d, "messages.db"), []byte("db"), 0o600)
	os.MkdirAll(filepath.Join(d, "sub", "x"), 0o755)
	if err := wipeExceptKeys(d, filepath.Join(d, "keys")); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(d)
	if len(ents) != 1 || ents[0].Name() != "keys" {
		t.Errorf("left %v, want only keys", ents)
	}
}

func TestHostedInvalidConfigIsDegraded(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "snodebox.toml")
	os.WriteFile(cfgFile, []byte("[ports]\nrpc = 0\n"), 0o644)
	b := sim.New()
	h := &hostedRun{done: make(chan error, 1), data: t.TempDir(), stat: nodetest.FreeAddr(t)}
	started := make(chan *app, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		h.done <- runHosted(ctx, HostedConfig{
			Node:       node.Config{DataDir: h.data, Listen: nodetest.FreeAddr(t), StatusListen: h.stat},
			ConfigFile: cfgFile, Board: b, LogOutput: io.Discard, HealthInterval: 1,
			onStart: func(a *app) { started <- a },
		})
	}()
	h.app = <-started
	t.Cleanup(func() { cancel(); <-h.done })
	nodetest.Until(t, "LED degraded", func() bool { return b.LED() == board.LEDDegraded })
	r := h.app.Report()
	if !strings.Contains(r.ConfigError, "snodebox.toml:2: ports.rpc") || r.Healthy {
		t.Errorf("report: config_error %q healthy %v", r.ConfigError, r.Healthy)
	}
}

func TestTrafficFlickersWhileHealthy(t *testing.T) {
	b := sim.New()
	h := startHosted(t, b)
	nodetest.Until(t, "LED healthy", func() bool { return b.LED() == board.LEDHealthy })
	n, _ := h.app.current()
	var acct storage.Account
	acct.Type = 0x05
	acct.Key[0] = 1
	data := []byte("hello")
	now := time.Now().UnixMilli()
	msg := storage.Message{Hash: storage.MessageHash(acct, 0, data), Owner: acct, Timestamp: now, Expiry: now + 3600_000, Data: data}
	if _, _, err := n.Store.Store(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	nodetest.Until(t, "a traffic flicker", func() bool { return b.Flickers() > 0 })
}

// snoded run --pprof: the status address answers `go tool pprof` (a
// gzipped profile) beside the page; without the flag it has no such path.
func TestHostedProfilingOnlyWhenAsked(t *testing.T) {
	get := func(h *hostedRun) (int, []byte) {
		t.Helper()
		resp, err := http.Get("http://" + h.stat + status.ProfilePath + "?seconds=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	on := startHosted(t, sim.New(), func(c *HostedConfig) { c.Profiling = true })
	if code, body := get(on); code != http.StatusOK || len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		t.Errorf("with --pprof: status %d, %d bytes, want a gzipped profile", code, len(body))
	}
	if resp, err := http.Get("http://" + on.stat + "/status.json"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("with --pprof the status page still answers: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	off := startHosted(t, sim.New())
	if code, _ := get(off); code != http.StatusNotFound {
		t.Errorf("without --pprof: status %d, want 404", code)
	}
}
