package board

import (
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Each step either presses/releases after a wait; a release may expect an
// action (or none).
type step struct {
	wait    time.Duration
	press   bool // false: release
	want    Action
	wantAny bool // a release that must produce want
}

func press(wait time.Duration) step { return step{wait: wait, press: true} }
func release(wait time.Duration) step {
	return step{wait: wait}
}
func releaseGives(wait time.Duration, a Action) step {
	return step{wait: wait, want: a, wantAny: true}
}

func TestGestures(t *testing.T) {
	s := time.Second
	ms := time.Millisecond
	tests := []struct {
		name  string
		steps []step
	}{
		{"short press is a status press", []step{press(0), releaseGives(300*ms, ActionStatus)}},
		{"just under 2 s is still a status press", []step{press(0), releaseGives(2*s-ms, ActionStatus)}},
		{"2 to 5 s does nothing", []step{press(0), release(3 * s)}},
		{"hold 5 s reboots", []step{press(0), releaseGives(5*s, ActionReboot)}},
		{"hold 14.9 s released before 15 s reboots", []step{press(0), releaseGives(15*s-100*ms, ActionReboot)}},
		{"hold 15 s alone does nothing", []step{press(0), release(15 * s)}},
		{"hold 15 s then press within 10 s resets", []step{
			press(0), release(16 * s), press(4 * s), releaseGives(200*ms, ActionFactoryReset)}},
		{"confirming press at exactly 10 s still counts", []step{
			press(0), release(15 * s), press(10 * s), releaseGives(100*ms, ActionFactoryReset)}},
		{"confirming press after 10 s is only a status press", []step{
			press(0), release(15 * s), press(10*s + ms), releaseGives(100*ms, ActionStatus)}},
		{"a long second press disarms and counts on its own", []step{
			press(0), release(15 * s), press(1 * s), releaseGives(6*s, ActionReboot),
			press(1 * s), releaseGives(100*ms, ActionStatus)}},
		{"arming is used up by the reset", []step{
			press(0), release(15 * s), press(s), releaseGives(100*ms, ActionFactoryReset),
			press(s), releaseGives(100*ms, ActionStatus)}},
		{"two long holds re-arm", []step{
			press(0), release(15 * s), press(2 * s), release(20 * s), press(9 * s), releaseGives(100*ms, ActionFactoryReset)}},
		{"contact bounce on press and release is one press", []step{
			press(0), release(5 * ms), press(5 * ms), releaseGives(500*ms, ActionStatus), press(10 * ms), release(5 * ms)}},
		{"release without press is ignored", []step{release(s), press(s), releaseGives(s, ActionStatus)}},
		{"repeated press edges are one press", []step{press(0), press(500 * ms), releaseGives(500*ms, ActionStatus)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			g := &Gestures{Clock: c.now, Debounce: DefaultDebounce}
			for i, st := range tc.steps {
				c.advance(st.wait)
				if st.press {
					g.Press()
					continue
				}
				a, ok := g.Release()
				if st.wantAny && (!ok || a != st.want) {
					t.Fatalf("step %d: release gave (%v, %v), want %v", i, a, ok, st.want)
				}
				if !st.wantAny && ok {
					t.Fatalf("step %d: release gave %v, want no action", i, a)
				}
			}
		})
	}
}

func TestGesturesArmedReportsWindow(t *testing.T) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	g := &Gestures{Clock: c.now}
	g.Press()
	c.advance(FactoryResetHold)
	if d := g.Held(); d != FactoryResetHold {
		t.Fatalf("Held = %v, want %v", d, FactoryResetHold)
	}
	g.Release()
	if !g.Armed() {
		t.Fatal("not armed after a 15 s hold")
	}
	c.advance(FactoryResetWindow + time.Millisecond)
	if g.Armed() {
		t.Fatal("still armed after the 10 s window")
	}
}

func TestActionAndLEDNames(t *testing.T) {
	want := map[LEDState]string{LEDBooting: "booting", LEDNoNetwork: "no-network", LEDSyncing: "syncing",
		LEDHealthy: "healthy", LEDUpdating: "updating", LEDDegraded: "degraded"}
	for s, n := range want {
		if s.String() != n {
			t.Errorf("%d.String() = %q, want %q", int(s), s.String(), n)
		}
		back, err := ParseLEDState(n)
		if err != nil || back != s {
			t.Errorf("ParseLEDState(%q) = %v, %v", n, back, err)
		}
	}
	if _, err := ParseLEDState("disco"); err == nil {
		t.Error("ParseLEDState accepted an unknown state")
	}
	acts := map[Action]string{ActionStatus: "status", ActionReboot: "reboot", ActionFactoryReset: "factory-reset", ActionPowerOff: "power-off"}
	for a, n := range acts {
		if a.String() != n {
			t.Errorf("%d.String() = %q, want %q", int(a), a.String(), n)
		}
	}
}
