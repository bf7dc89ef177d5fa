package board

import (
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// fakeLine is a GPIO input: the test sets the level and fires edges.
type fakeLine struct {
	level  atomic.Bool
	edges  chan bool
	halt   chan struct{}
	closed atomic.Bool
}

func newFakeLine(high bool) *fakeLine {
	l := &fakeLine{edges: make(chan bool), halt: make(chan struct{}, 1)}
	l.level.Store(high)
	return l
}

func (l *fakeLine) WaitForEdge(time.Duration) bool {
	select {
	case high := <-l.edges:
		// The level changes as the reader wakes, never before it has read
		// the idle level at start.
		l.level.Store(high)
		return true
	case <-l.halt:
		return false
	}
}
func (l *fakeLine) Level() bool { return l.level.Load() }
func (l *fakeLine) Halt() error {
	select {
	case l.halt <- struct{}{}:
	default:
	}
	return nil
}
func (l *fakeLine) Close() { l.closed.Store(true) }

// edge signals one edge that leaves the line at high.
func (l *fakeLine) edge(high bool) { l.edges <- high }

func TestGPIOButtonSettlesBounceAndDecodes(t *testing.T) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	acts := make(chan Action, 8)
	keys := &keyHandler{gestures: &Gestures{Clock: c.now}, emit: func(a Action) { acts <- a }}
	line := newFakeLine(true) // active low: idle high
	b := &gpioButton{line: line, activeLow: true, keys: keys, settle: func() {},
		stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()

	// A bounce: falling edge, but the level is back high when read.
	line.edge(true)
	// Press (low), hold 6 s on the fake clock, release with a bounce first.
	line.edge(false)
	line.edge(false) // bounce while held: same level, no new press
	c.advance(6 * time.Second)
	line.edge(true)
	// Short press (the repeated edge makes sure the press was handled
	// before the clock moves).
	line.edge(false)
	line.edge(false)
	c.advance(200 * time.Millisecond)
	line.edge(true)
	if a, b := <-acts, <-acts; a != ActionReboot || b != ActionStatus {
		t.Fatalf("actions %v %v, want reboot, status", a, b)
	}
	b.close()
	if !line.closed.Load() {
		t.Fatal("line not released on close")
	}
	if len(acts) != 0 {
		t.Fatalf("extra action %v from bounces", <-acts)
	}
}

func TestGPIOButtonActiveHigh(t *testing.T) {
	acts := make(chan Action, 8)
	keys := &keyHandler{gestures: &Gestures{Clock: time.Now}, emit: func(a Action) { acts <- a }}
	line := newFakeLine(false)
	b := &gpioButton{line: line, activeLow: false, keys: keys, settle: func() {}, stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	line.edge(true)
	line.edge(false)
	if a := <-acts; a != ActionStatus {
		t.Fatalf("active-high press gave %v", a)
	}
	b.close()
}

// recorder is an on/off output that reports each change.
type recorder struct{ ch chan bool }

func (r *recorder) set(on bool) error { r.ch <- on; return nil }

func TestSoftLEDPatterns(t *testing.T) {
	r := &recorder{ch: make(chan bool, 64)}
	s := &SoftLED{Set: r.set}
	p, _ := PatternFor(LEDNoNetwork)
	if err := s.Show(p); err != nil {
		t.Fatal(err)
	}
	var seq []bool
	for range 5 {
		seq = append(seq, <-r.ch)
	}
	want := []bool{true, false, true, false, true} // two short blinks, pause, again
	for i := range want {
		if seq[i] != want[i] {
			t.Fatalf("sequence %v, want %v", seq, want)
		}
	}
	p, _ = PatternFor(LEDHealthy)
	s.Show(p)
	for v := range r.ch { // drain until the steady on arrives
		if v && len(r.ch) == 0 {
			break
		}
	}
	s.Flicker()
	if off, on := <-r.ch, <-r.ch; off || !on {
		t.Fatalf("flicker went %v then %v, want off then on", off, on)
	}
	s.Close()
	if v := <-r.ch; v {
		t.Fatal("close left the LED on")
	}
}

func TestDetectWithGPIOOverrides(t *testing.T) {
	root := t.TempDir()
	fakeDT(t, root, []string{"raspberrypi,4-model-b"}, "Raspberry Pi 4 Model B Rev 1.5", "")
	// A Pi without the ACT LED in sysfs: the GPIO LED from the config is used.
	line := newFakeLine(true)
	r := &recorder{ch: make(chan bool, 64)}
	var ledPin, buttonPin int
	opt := DefaultOptions()
	opt.LEDGPIO, opt.ButtonGPIO, opt.ButtonActiveLow, opt.NoConsole = 17, 27, true, true
	b := detect(RootAt(root), nil, opt,
		func(n int, low bool) (InputLine, error) { buttonPin = n; return line, nil },
		func(n int) (*SoftLED, error) { ledPin = n; return &SoftLED{Set: r.set}, nil })
	defer b.Close()
	if ledPin != 17 || buttonPin != 27 {
		t.Fatalf("pins led %d button %d", ledPin, buttonPin)
	}
	b.SetLED(LEDHealthy)
	if !<-r.ch {
		t.Fatal("healthy did not light the GPIO LED")
	}
	line.edge(false)
	time.Sleep(3 * SettleTime) // the press must outlast the settle time to count
	line.edge(true)
	if a := <-b.Actions(); a != ActionStatus {
		t.Fatalf("GPIO button gave %v", a)
	}

	// A named sysfs LED wins over the GPIO one.
	mkfiles(t, filepath.Join(root, "sys", "class", "leds", "status"), map[string]string{"trigger": allTriggers, "brightness": "0"})
	opt = DefaultOptions()
	opt.LED, opt.NoConsole = "status", true
	b2 := detect(RootAt(root), nil, opt, nil, nil)
	defer b2.Close()
	if _, ok := b2.(*Hardware).cfg.LED.(*SysfsLED); !ok {
		t.Fatalf("named LED not used: %T", b2.(*Hardware).cfg.LED)
	}
}
