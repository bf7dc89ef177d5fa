package board

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Step is one segment of a blink code: the LED on or off for D.
type Step struct {
	On bool
	D  time.Duration
}

// Pattern is how the LED shows one state. Exactly one form applies:
// Steady (on, no blinking), a plain blink (On/Off set) or a code (Steps).
type Pattern struct {
	Steady  bool
	On, Off time.Duration
	Steps   []Step
}

// Blink codes (DESIGN §4). Plain blinks use the kernel "timer" trigger,
// codes the "pattern" trigger; both run in the kernel, so blinking costs
// snoded no wake-ups.
var patterns = [...]Pattern{
	LEDBooting: {On: 100 * time.Millisecond, Off: 100 * time.Millisecond},
	LEDNoNetwork: {Steps: []Step{
		{true, 150 * time.Millisecond}, {false, 200 * time.Millisecond},
		{true, 150 * time.Millisecond}, {false, 1500 * time.Millisecond},
	}},
	LEDSyncing: {On: time.Second, Off: time.Second},
	LEDHealthy: {Steady: true},
	LEDUpdating: {Steps: []Step{
		{true, 200 * time.Millisecond}, {false, 300 * time.Millisecond},
		{true, 900 * time.Millisecond}, {false, 300 * time.Millisecond},
	}},
	LEDDegraded: {Steps: []Step{
		{true, 150 * time.Millisecond}, {false, 200 * time.Millisecond},
		{true, 150 * time.Millisecond}, {false, 200 * time.Millisecond},
		{true, 150 * time.Millisecond}, {false, 1500 * time.Millisecond},
	}},
}

// PatternFor is the LED pattern of a state.
func PatternFor(s LEDState) (Pattern, error) {
	if !s.Valid() {
		return Pattern{}, errInvalidLED(s)
	}
	return patterns[s], nil
}

// FlickerTime is how long the LED goes dark for one traffic flicker, and
// the shortest gap between two (busy nodes flicker, they do not strobe).
const FlickerTime = 40 * time.Millisecond

// SysfsLED drives one LED in /sys/class/leds/<name> through kernel triggers:
// "none"+brightness for steady, "timer" (delay_on/delay_off) for plain
// blinks, "pattern" for blink codes, "oneshot" (inverted) for the traffic
// flicker. Where a trigger is missing from the kernel it falls back to
// stepping brightness from a goroutine.
type SysfsLED struct {
	Dir string
	// WriteFile writes one attribute; tests swap it to record the order of
	// writes. Nil means a plain write; O_CREATE lets a fake tree grow the
	// attributes a trigger adds, while real sysfs refuses to create files,
	// so a missing attribute still surfaces as an error there.
	WriteFile func(path, value string) error

	mu       sync.Mutex
	max      int
	triggers map[string]bool
	steady   bool // showing steady on
	oneshot  bool // steady via inverted oneshot: flicker is one write
	lastFlk  time.Time
	player   *stepPlayer // software blinking, when running
}

// FindLED returns the status LED's directory under a sysfs root ("/sys"):
// the Pi's ACT LED under its current name or the older led0.
func FindLED(sysRoot string) (string, error) {
	for _, n := range []string{"ACT", "led0", "act"} {
		d := filepath.Join(sysRoot, "class", "leds", n)
		if _, err := os.Stat(filepath.Join(d, "brightness")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no status LED (ACT or led0) under %s", filepath.Join(sysRoot, "class", "leds"))
}

func ledNamed(sysRoot, name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("LED name %q", name)
	}
	d := filepath.Join(sysRoot, "class", "leds", name)
	if _, err := os.Stat(filepath.Join(d, "brightness")); err != nil {
		return "", fmt.Errorf("LED %s: %w", name, err)
	}
	return d, nil
}

// OpenSysfsLED reads the LED's max_brightness and the triggers its kernel offers.
func OpenSysfsLED(dir string) (*SysfsLED, error) {
	l := &SysfsLED{Dir: dir, max: 1}
	if b, err := os.ReadFile(filepath.Join(dir, "max_brightness")); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && v > 0 {
			l.max = v
		}
	}
	if err := l.readTriggers(); err != nil {
		return nil, fmt.Errorf("open LED %s: %w", dir, err)
	}
	return l, nil
}

// readTriggers adds the kernel's triggers to those known. Show calls it
// again each time: ledtrig-* modules may load after the LED was opened (PID
// 1 opens the board before it loads modules), and state changes are rare.
// Triggers are only ever added; ours are never unloaded.
func (l *SysfsLED) readTriggers() error {
	b, err := os.ReadFile(filepath.Join(l.Dir, "trigger"))
	if err != nil {
		return err
	}
	if l.triggers == nil {
		l.triggers = map[string]bool{}
	}
	for _, t := range strings.Fields(string(b)) {
		l.triggers[strings.Trim(t, "[]")] = true
	}
	return nil
}

// HasTrigger reports whether the kernel offers a trigger for this LED.
func (l *SysfsLED) HasTrigger(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.triggers[name]
}

func (l *SysfsLED) write(attr, value string) error {
	p := filepath.Join(l.Dir, attr)
	if l.WriteFile != nil {
		return l.WriteFile(p, value)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("LED %s: %w", attr, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("LED %s=%q: %w", attr, value, err)
	}
	return nil
}

// writes does the writes in order and stops at the first error.
func (l *SysfsLED) writes(kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if err := l.write(kv[i], kv[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// PatternString is p in ledtrig-pattern's sysfs syntax: "brightness ms"
// pairs, each step followed by a zero-length pair of the same brightness so
// the kernel steps instead of dimming.
func PatternString(p Pattern, max int) string {
	var b strings.Builder
	for i, s := range p.Steps {
		lvl := 0
		if s.On {
			lvl = max
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d %s %d 0", lvl, ms(s.D), lvl)
	}
	return b.String()
}

// Show puts p on the LED.
func (l *SysfsLED) Show(p Pattern) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopSoftware()
	l.steady, l.oneshot = false, false
	l.readTriggers() // keeps the last list if the read fails
	switch {
	case p.Steady:
		l.steady = true
		if l.triggers["oneshot"] {
			// Inverted oneshot idles on; each "shot" blinks it off once
			// for delay_on, timed by the kernel.
			if err := l.writes("trigger", "oneshot", "invert", "1",
				"delay_on", ms(FlickerTime), "delay_off", ms(FlickerTime)); err == nil {
				l.oneshot = true
				return nil
			}
		}
		return l.writes("trigger", "none", "brightness", strconv.Itoa(l.max))
	case len(p.Steps) > 0:
		if l.triggers["pattern"] {
			if err := l.writes("trigger", "pattern", "pattern", PatternString(p, l.max), "repeat", "-1"); err == nil {
				return nil
			}
		}
		return l.software(p.Steps)
	case p.On > 0 || p.Off > 0:
		if l.triggers["timer"] {
			if err := l.writes("trigger", "timer", "delay_on", ms(p.On), "delay_off", ms(p.Off)); err == nil {
				return nil
			}
		}
		return l.software([]Step{{true, p.On}, {false, p.Off}})
	default:
		return l.writes("trigger", "none", "brightness", "0")
	}
}

// Flicker blinks a steady LED off briefly; it does nothing while the LED
// blinks a code, and at most once per 2×FlickerTime.
func (l *SysfsLED) Flicker() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.steady {
		return nil
	}
	now := time.Now()
	if now.Sub(l.lastFlk) < 2*FlickerTime {
		return nil
	}
	l.lastFlk = now
	if l.oneshot {
		return l.write("shot", "1")
	}
	if err := l.write("brightness", "0"); err != nil {
		return err
	}
	// Without the oneshot trigger the flicker is ours to time; hand the
	// re-light to a timer rather than sleeping on the caller's request path.
	time.AfterFunc(FlickerTime, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.steady && !l.oneshot {
			l.write("brightness", strconv.Itoa(l.max))
		}
	})
	return nil
}

// software steps brightness from a goroutine: the fallback for kernels
// without the timer or pattern trigger.
func (l *SysfsLED) software(steps []Step) error {
	if err := l.write("trigger", "none"); err != nil {
		return err
	}
	var total time.Duration
	for _, s := range steps {
		total += s.D
	}
	if total <= 0 {
		return errors.New("LED pattern has no duration")
	}
	l.player = playSteps(steps, func(on bool) {
		lvl := "0"
		if on {
			lvl = strconv.Itoa(l.max)
		}
		l.write("brightness", lvl)
	})
	return nil
}

func (l *SysfsLED) stopSoftware() {
	l.player.Stop()
	l.player = nil
}

// stepPlayer shows a pattern's steps in a loop from its own goroutine until
// stopped: the software blinking of a GPIO LED, and of a sysfs LED whose
// kernel lacks the timer and pattern triggers.
type stepPlayer struct {
	stop, done chan struct{}
}

// playSteps starts showing steps with set, from the first step at once.
// Each step lasts at least a millisecond, so a pattern of zero durations
// cannot spin a core.
func playSteps(steps []Step, set func(on bool)) *stepPlayer {
	p := &stepPlayer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTimer(0)
		defer t.Stop()
		for i := 0; ; i = (i + 1) % len(steps) {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			set(steps[i].On)
			t.Reset(max(steps[i].D, time.Millisecond))
		}
	}()
	return p
}

// Stop ends the loop and waits for it; a nil player is stopped already.
func (p *stepPlayer) Stop() {
	if p != nil {
		close(p.stop)
		<-p.done
	}
}

// Close stops any software blinking and leaves the LED to the kernel's
// default-on state.
func (l *SysfsLED) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopSoftware()
	l.steady, l.oneshot = false, false
	return l.writes("trigger", "none", "brightness", strconv.Itoa(l.max))
}
