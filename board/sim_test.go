package board

import (
	"testing"
	"time"
)

func TestSimLEDHistoryAndButton(t *testing.T) {
	s := NewSim()
	for _, st := range []LEDState{LEDNoNetwork, LEDSyncing, LEDHealthy, LEDHealthy} {
		if err := s.SetLED(st); err != nil {
			t.Fatal(err)
		}
	}
	var got []LEDState
	for _, c := range s.History() {
		got = append(got, c.State)
	}
	want := []LEDState{LEDBooting, LEDNoNetwork, LEDSyncing, LEDHealthy}
	if len(got) != len(want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("history %v, want %v", got, want)
		}
	}
	s.Traffic()
	if s.Flickers() != 1 {
		t.Fatalf("flickers %d", s.Flickers())
	}

	presses := []struct {
		hold time.Duration
		want Action
		ok   bool
	}{
		{300 * time.Millisecond, ActionStatus, true},
		{6 * time.Second, ActionReboot, true},
		{16 * time.Second, 0, false},
		{200 * time.Millisecond, ActionFactoryReset, true},
	}
	for _, p := range presses {
		a, ok := s.Press(p.hold)
		if ok != p.ok || (ok && a != p.want) {
			t.Fatalf("Press(%v) = %v, %v; want %v, %v", p.hold, a, ok, p.want, p.ok)
		}
		if ok {
			if got := <-s.Actions(); got != p.want {
				t.Fatalf("Actions gave %v, want %v", got, p.want)
			}
		} else if !s.FactoryResetArmed() {
			t.Fatal("a 16 s hold did not arm the factory reset")
		}
	}
	s.PowerKey()
	if a := <-s.Actions(); a != ActionPowerOff {
		t.Fatalf("power key gave %v", a)
	}
}

func TestSimHistoryIsBounded(t *testing.T) {
	s := NewSim()
	for i := range 1000 {
		s.SetLED(LEDState(i % 6))
	}
	if n := len(s.History()); n > simHistory {
		t.Fatalf("history grew to %d", n)
	}
}
