package board

import (
	"strings"
	"testing"
	"time"
)

// fakeTimers hands timer callbacks to the test instead of running them.
type fakeTimers struct {
	pending []*fakeTimer
}

type fakeTimer struct {
	d       time.Duration
	f       func()
	stopped bool
}

func (ft *fakeTimers) after(d time.Duration, f func()) func() bool {
	t := &fakeTimer{d: d, f: f}
	ft.pending = append(ft.pending, t)
	return func() bool { was := !t.stopped; t.stopped = true; return was }
}

// fire runs the live timer of duration d (even a stopped one when stale is
// set: a Stop that lost the race against the timer firing).
func (ft *fakeTimers) fire(t *testing.T, d time.Duration, stale bool) {
	t.Helper()
	for i := len(ft.pending) - 1; i >= 0; i-- {
		p := ft.pending[i]
		if p.d == d && (stale || !p.stopped) {
			p.f()
			return
		}
	}
	t.Fatalf("no timer of %v", d)
}

func TestHoldFeedback(t *testing.T) {
	ft := &fakeTimers{}
	var shown []string
	name := func(p *Pattern) string {
		switch {
		case p == nil:
			return "state"
		case p.On == holdRebootPattern.On && p.Off == holdRebootPattern.Off:
			return "reboot-hint"
		default:
			return "reset-hint"
		}
	}
	f := &feedback{after: ft.after, show: func(p *Pattern) { shown = append(shown, name(p)) }}
	expect := func(want ...string) {
		t.Helper()
		if len(shown) != len(want) {
			t.Fatalf("shown %v, want %v", shown, want)
		}
		for i := range want {
			if shown[i] != want[i] {
				t.Fatalf("shown %v, want %v", shown, want)
			}
		}
		shown = nil
	}

	// A short press touches nothing.
	f.pressed()
	f.released(false)
	expect()

	// Held past 5 s: reboot hint; released: back to the state.
	f.pressed()
	ft.fire(t, RebootHold, false)
	expect("reboot-hint")
	f.released(false)
	expect("state")

	// Held past 15 s: reboot hint, then dark; released armed: stays dark
	// until the window closes.
	f.pressed()
	ft.fire(t, RebootHold, false)
	ft.fire(t, FactoryResetHold, false)
	f.released(true)
	expect("reboot-hint", "reset-hint", "reset-hint")
	ft.fire(t, FactoryResetWindow, false)
	expect("state")

	// Armed, then the confirming press: the window timer is stale.
	f.pressed()
	ft.fire(t, RebootHold, false)
	ft.fire(t, FactoryResetHold, false)
	f.released(true)
	shown = nil
	f.pressed()
	ft.fire(t, FactoryResetWindow, true)
	expect()
	f.released(false)
	expect("state")

	// A timer that fires after the release changes nothing.
	f.pressed()
	f.released(false)
	ft.fire(t, RebootHold, true)
	expect()
}

func TestHoldFeedbackOnTheLED(t *testing.T) {
	r := &recorder{ch: make(chan bool, 64)}
	h := NewHardware(HardwareConfig{Info: Info{Name: "rpi3"}, Root: RootAt(t.TempDir()), LED: &SoftLED{Set: r.set}, ScanFor: time.Millisecond})
	defer h.Close()
	h.SetLED(LEDHealthy)
	if !<-r.ch {
		t.Fatal("healthy is not on")
	}
	h.showOverlay(&holdResetPattern)
	if <-r.ch {
		t.Fatal("reset hint is not dark")
	}
	// Health changes while the hint shows are remembered, not shown...
	h.SetLED(LEDSyncing)
	h.Traffic()
	if len(r.ch) != 0 {
		t.Fatalf("LED changed under the hint: %v", <-r.ch)
	}
	// ...and shown when the hint goes.
	h.showOverlay(nil)
	if !<-r.ch || <-r.ch {
		t.Fatal("syncing blink did not resume after the hint")
	}
}

func TestCodePattern(t *testing.T) {
	p, d, err := CodePattern(3)
	if err != nil {
		t.Fatal(err)
	}
	var ons int
	var total time.Duration
	for _, s := range p.Steps {
		if s.On {
			ons++
		}
		total += s.D
	}
	if ons != 3 || total != d || p.Steps[0].On || p.Steps[len(p.Steps)-1].On {
		t.Fatalf("code 3: %d blinks over %v (said %v), steps %v", ons, total, d, p.Steps)
	}
	for _, bad := range []int{0, -1, MaxCode + 1} {
		if _, _, err := CodePattern(bad); err == nil {
			t.Errorf("code %d accepted", bad)
		}
	}
}

func TestBlinkCodeOnTheLED(t *testing.T) {
	r := &recorder{ch: make(chan bool, 256)}
	var console syncBuf
	h := NewHardware(HardwareConfig{Info: Info{Name: "rpi3"}, Root: RootAt(t.TempDir()), LED: &SoftLED{Set: r.set}, Console: &console, ScanFor: time.Millisecond})
	defer h.Close()
	h.SetLED(LEDHealthy)
	<-r.ch
	if err := h.BlinkCode(2); err != nil {
		t.Fatal(err)
	}
	// dark lead, on, off, on, off, then steady on again for healthy.
	want := []bool{false, true, false, true, false}
	for i, w := range want {
		if got := <-r.ch; got != w {
			t.Fatalf("step %d: LED %v, want %v", i, got, w)
		}
	}
	for on := <-r.ch; !on; on = <-r.ch {
		// The code's stepper may start its next (dark) round just as the
		// overlay ends; what matters is that healthy's steady on follows.
	}
	if !strings.Contains(console.String(), "snodebox: led code 2\n") {
		t.Fatalf("console %q", console.String())
	}
	s := NewSim()
	s.BlinkCode(4)
	if c := s.Codes(); len(c) != 1 || c[0] != 4 {
		t.Fatalf("sim codes %v", c)
	}
}
