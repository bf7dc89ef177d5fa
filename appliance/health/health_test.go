package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/snodebox/snodebox/board"
	"github.com/snodebox/snodebox/board/sim"
)

func good() Facts {
	return Facts{DataMounted: true, Network: true, ClockSane: true, ClockSynced: true}
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Facts)
		led     board.LEDState
		healthy bool
		reason  string // substring of some reason
		warning string // substring of some warning
	}{
		{name: "all good", mod: func(f *Facts) {}, led: board.LEDHealthy, healthy: true},
		{name: "booting", mod: func(f *Facts) { f.Booting = true }, led: board.LEDBooting, reason: "booting"},
		{name: "no route", mod: func(f *Facts) { f.Network = false }, led: board.LEDNoNetwork, reason: "no network route"},
		{name: "clock at 1970", mod: func(f *Facts) { f.ClockSane = false; f.ClockSynced = false }, led: board.LEDNoNetwork, reason: "clock not set"},
		{name: "clock not synced is only a warning", mod: func(f *Facts) { f.ClockSynced = false; f.ClockNote = "no time server answered" },
			led: board.LEDHealthy, healthy: true, warning: "clock not synced: no time server answered"},
		{name: "not in a swarm", mod: func(f *Facts) { f.SwarmReasons = []string{"not in a swarm"} }, led: board.LEDSyncing, reason: "not in a swarm"},
		{name: "rpc down", mod: func(f *Facts) { f.RPCError = "connection refused" }, led: board.LEDSyncing, reason: "storage RPC not answering: connection refused"},
		{name: "no data disk", mod: func(f *Facts) { f.DataMounted = false; f.DataError = "no partition labelled snode-data" },
			led: board.LEDDegraded, reason: "data partition not mounted: no partition labelled snode-data"},
		{name: "crash loop", mod: func(f *Facts) { f.CrashLoops = []string{"https"} }, led: board.LEDDegraded, reason: "service https is crash looping"},
		{name: "config error", mod: func(f *Facts) { f.ConfigError = "snodebox.toml:3: ports.rpc: must be 1–65535" },
			led: board.LEDDegraded, reason: "ports.rpc"},
		{name: "degraded beats booting and no network", mod: func(f *Facts) { f.DataMounted = false; f.Booting = true; f.Network = false },
			led: board.LEDDegraded, reason: "no network route"},
		{name: "updating", mod: func(f *Facts) { f.Updating = true }, led: board.LEDUpdating, healthy: true},
		{name: "rollback is degraded but healthy", mod: func(f *Facts) { f.Rollback = "health check failed" },
			led: board.LEDDegraded, healthy: true, warning: "update rolled back: health check failed"},
		{name: "rpc errors ignored while booting", mod: func(f *Facts) { f.Booting = true; f.RPCError = "refused" }, led: board.LEDBooting, reason: "booting"},
	}
	for _, tc := range tests {
		f := good()
		tc.mod(&f)
		r := Evaluate(f)
		if r.LED != tc.led || r.Healthy != tc.healthy {
			t.Errorf("%s: led %v healthy %v, want %v %v (reasons %q)", tc.name, r.LED, r.Healthy, tc.led, tc.healthy, r.Reasons)
		}
		if tc.healthy && len(r.Reasons) != 0 {
			t.Errorf("%s: healthy with reasons %q", tc.name, r.Reasons)
		}
		if tc.reason != "" && !strings.Contains(strings.Join(r.Reasons, "\n"), tc.reason) {
			t.Errorf("%s: reasons %q lack %q", tc.name, r.Reasons, tc.reason)
		}
		if tc.warning != "" && !strings.Contains(strings.Join(r.Warnings, "\n"), tc.warning) {
			t.Errorf("%s: warnings %q lack %q", tc.name, r.Warnings, tc.warning)
		}
	}
}

// world is a mutable set of facts the probes read.
type world struct {
	mu sync.Mutex
	f  Facts
}

func (w *world) set(mod func(*Facts)) { w.mu.Lock(); mod(&w.f); w.mu.Unlock() }
func (w *world) get() Facts           { w.mu.Lock(); defer w.mu.Unlock(); return w.f }

func TestMonitorDrivesTheLEDThroughBoot(t *testing.T) {
	w := &world{f: Facts{Booting: true, DataMounted: true, ClockSane: true}}
	b := sim.New()
	var changes []string
	m := &Monitor{
		Board: b,
		Probes: Probes{
			Booting:     func() bool { return w.get().Booting },
			Data:        func() (bool, string) { f := w.get(); return f.DataMounted, f.DataError },
			Network:     func() bool { return w.get().Network },
			Clock:       func() (bool, bool, string) { f := w.get(); return f.ClockSane, f.ClockSynced, "" },
			Swarm:       func() []string { return w.get().SwarmReasons },
			CrashLoops:  func() []string { return w.get().CrashLoops },
			ConfigError: func() string { return w.get().ConfigError },
			RPC: func(ctx context.Context) error {
				return nil
			},
		},
		OnChange: func(prev, next Result) { changes = append(changes, next.LED.String()) },
	}
	steps := []struct {
		mod  func(*Facts)
		want board.LEDState
	}{
		{func(f *Facts) {}, board.LEDBooting},
		{func(f *Facts) { f.Booting = false }, board.LEDNoNetwork},                                    // no DHCP lease yet
		{func(f *Facts) { f.Network = true; f.SwarmReasons = []string{"syncing"} }, board.LEDSyncing}, // link up, joining
		{func(f *Facts) { f.SwarmReasons = nil }, board.LEDHealthy},                                   // in a swarm
		{func(f *Facts) { f.CrashLoops = []string{"swarm"} }, board.LEDDegraded},                      // a service keeps dying
		{func(f *Facts) { f.CrashLoops = nil }, board.LEDHealthy},                                     // it recovered
		{func(f *Facts) { f.DataMounted = false; f.DataError = "mount failed" }, board.LEDDegraded},   // disk gone
	}
	for i, s := range steps {
		w.set(s.mod)
		r := m.Check(context.Background())
		if b.LED() != s.want || r.LED != s.want {
			t.Fatalf("step %d: LED %v (result %v), want %v", i, b.LED(), r.LED, s.want)
		}
	}
	want := "booting no-network syncing healthy degraded healthy degraded"
	if got := strings.Join(changes, " "); got != want {
		t.Errorf("LED changes %q, want %q", got, want)
	}
	var seen []string
	for _, h := range b.History() {
		seen = append(seen, h.State.String())
	}
	if got := strings.Join(seen, " "); got != want {
		t.Errorf("sim board LED history %q, want %q", got, want)
	}
	if m.Last().Healthy {
		t.Error("Last() healthy after losing the disk")
	}
}

func TestRPCProbe(t *testing.T) {
	var status int
	var gotBody string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 100)
		n, _ := r.Body.Read(b)
		gotBody = r.Method + " " + r.URL.Path + " " + string(b[:n])
		w.WriteHeader(status)
		w.Write([]byte("not ready"))
	}))
	defer srv.Close()
	probe := RPCProbe(strings.TrimPrefix(srv.URL, "https://"))
	status = http.StatusOK
	if err := probe(context.Background()); err != nil {
		t.Fatalf("probe against 200: %v", err)
	}
	if gotBody != `POST /storage_rpc/v1 {"method":"info","params":{}}` {
		t.Errorf("probe sent %q", gotBody)
	}
	status = http.StatusServiceUnavailable
	if err := probe(context.Background()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("probe against 503: %v", err)
	}
	srv.Close()
	if err := probe(context.Background()); err == nil {
		t.Error("probe against a closed port succeeded")
	}
}
