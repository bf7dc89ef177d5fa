package board

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// fakeLED makes /sys/class/leds/ACT as the kernel shows it before we touch
// it, and returns the LED with a recorder of every attribute write.
func fakeLED(t *testing.T, triggers, max string) (*SysfsLED, *writeLog) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sys", "class", "leds", "ACT")
	mkfiles(t, dir, map[string]string{"trigger": triggers, "brightness": "0", "max_brightness": max})
	led, err := OpenSysfsLED(dir)
	if err != nil {
		t.Fatal(err)
	}
	wl := &writeLog{dir: dir, ch: make(chan string, 64)}
	led.WriteFile = wl.write
	return led, wl
}

type writeLog struct {
	mu     sync.Mutex
	dir    string
	writes []string
	ch     chan string
}

func (w *writeLog) write(path, v string) error {
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		return err
	}
	rel, _ := filepath.Rel(w.dir, path)
	w.mu.Lock()
	w.writes = append(w.writes, rel+"="+v)
	w.mu.Unlock()
	select {
	case w.ch <- rel + "=" + v:
	default:
	}
	return nil
}

func (w *writeLog) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.writes
	w.writes = nil
	for len(w.ch) > 0 {
		<-w.ch
	}
	return out
}

func mkfiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const allTriggers = "none rc-feedback kbd-scrolllock [mmc0] timer oneshot heartbeat pattern default-on"

func TestLEDStatesWriteKernelTriggers(t *testing.T) {
	tests := []struct {
		state LEDState
		want  []string
	}{
		{LEDBooting, []string{"trigger=timer", "delay_on=100", "delay_off=100"}},
		{LEDNoNetwork, []string{"trigger=pattern", "pattern=1 150 1 0 0 200 0 0 1 150 1 0 0 1500 0 0", "repeat=-1"}},
		{LEDSyncing, []string{"trigger=timer", "delay_on=1000", "delay_off=1000"}},
		{LEDHealthy, []string{"trigger=oneshot", "invert=1", "delay_on=40", "delay_off=40"}},
		{LEDUpdating, []string{"trigger=pattern", "pattern=1 200 1 0 0 300 0 0 1 900 1 0 0 300 0 0", "repeat=-1"}},
		{LEDDegraded, []string{"trigger=pattern", "pattern=1 150 1 0 0 200 0 0 1 150 1 0 0 200 0 0 1 150 1 0 0 1500 0 0", "repeat=-1"}},
	}
	for _, tc := range tests {
		t.Run(tc.state.String(), func(t *testing.T) {
			led, wl := fakeLED(t, allTriggers, "1")
			p, err := PatternFor(tc.state)
			if err != nil {
				t.Fatal(err)
			}
			if err := led.Show(p); err != nil {
				t.Fatal(err)
			}
			if got := wl.take(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("writes\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestLEDPatternUsesMaxBrightness(t *testing.T) {
	led, wl := fakeLED(t, allTriggers, "255")
	p, _ := PatternFor(LEDNoNetwork)
	if err := led.Show(p); err != nil {
		t.Fatal(err)
	}
	want := []string{"trigger=pattern", "pattern=255 150 255 0 0 200 0 0 255 150 255 0 0 1500 0 0", "repeat=-1"}
	if got := wl.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("writes\n got %q\nwant %q", got, want)
	}
}

func TestLEDTrafficFlickerIsOneShot(t *testing.T) {
	led, wl := fakeLED(t, allTriggers, "1")
	p, _ := PatternFor(LEDHealthy)
	led.Show(p)
	wl.take()
	if err := led.Flicker(); err != nil {
		t.Fatal(err)
	}
	if got := wl.take(); !reflect.DeepEqual(got, []string{"shot=1"}) {
		t.Fatalf("flicker wrote %q, want shot=1", got)
	}
	// A burst of traffic is one flicker, not a strobe.
	led.Flicker()
	led.Flicker()
	if got := wl.take(); len(got) != 0 {
		t.Fatalf("burst flicker wrote %q, want nothing within %v of the last", got, 2*FlickerTime)
	}
	// While a code blinks, traffic leaves the LED alone.
	p, _ = PatternFor(LEDDegraded)
	led.Show(p)
	wl.take()
	led.Flicker()
	if got := wl.take(); len(got) != 0 {
		t.Fatalf("flicker during a blink code wrote %q", got)
	}
}

func TestLEDWithoutOneshotTogglesBrightness(t *testing.T) {
	led, wl := fakeLED(t, "none [mmc0] timer pattern", "1")
	p, _ := PatternFor(LEDHealthy)
	led.Show(p)
	if got := wl.take(); !reflect.DeepEqual(got, []string{"trigger=none", "brightness=1"}) {
		t.Fatalf("steady without oneshot wrote %q", got)
	}
	led.Flicker()
	if w := <-wl.ch; w != "brightness=0" {
		t.Fatalf("flicker first write %q, want brightness=0", w)
	}
	if w := <-wl.ch; w != "brightness=1" {
		t.Fatalf("flicker second write %q, want brightness=1", w)
	}
}

func TestLEDWithoutTriggersBlinksInSoftware(t *testing.T) {
	led, wl := fakeLED(t, "[none] mmc0", "1")
	p, _ := PatternFor(LEDDegraded)
	if err := led.Show(p); err != nil {
		t.Fatal(err)
	}
	if w := <-wl.ch; w != "trigger=none" {
		t.Fatalf("first write %q, want trigger=none", w)
	}
	// Three short blinks: on, off, on, off, on, off(pause), then again.
	var seq []string
	for range 7 {
		seq = append(seq, <-wl.ch)
	}
	want := []string{"brightness=1", "brightness=0", "brightness=1", "brightness=0", "brightness=1", "brightness=0", "brightness=1"}
	if !reflect.DeepEqual(seq, want) {
		t.Fatalf("software blink %q, want %q", seq, want)
	}
	if err := led.Close(); err != nil {
		t.Fatal(err)
	}
	got := wl.take()
	if n := len(got); n < 2 || got[n-2] != "trigger=none" || got[n-1] != "brightness=1" {
		t.Fatalf("close ended with %q, want trigger=none, brightness=1", got)
	}
}

func TestFindLED(t *testing.T) {
	for _, name := range []string{"ACT", "led0"} {
		root := t.TempDir()
		mkfiles(t, filepath.Join(root, "class", "leds", name), map[string]string{"brightness": "0", "trigger": "none"})
		mkfiles(t, filepath.Join(root, "class", "leds", "PWR"), map[string]string{"brightness": "0", "trigger": "none"})
		dir, err := FindLED(root)
		if err != nil || filepath.Base(dir) != name {
			t.Errorf("FindLED with %s = %q, %v", name, dir, err)
		}
	}
	if _, err := FindLED(t.TempDir()); err == nil || !strings.Contains(err.Error(), "ACT") {
		t.Errorf("FindLED on an empty tree: %v", err)
	}
}
