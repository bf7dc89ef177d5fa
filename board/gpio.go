package board

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/host/v3/gpioioctl"
)

// A button or LED wired straight to a GPIO pin (no gpio-keys/leds-gpio in
// the device tree) goes through the GPIO character device with periph.io.

// SettleTime is how long a GPIO button's level must be left alone after an
// edge before we read it: contact bounce of push buttons dies out well
// within it, and a human press is far longer.
const SettleTime = 30 * time.Millisecond

// InputLine is the part of a GPIO input line the button needs.
type InputLine interface {
	WaitForEdge(timeout time.Duration) bool // false when halted or timed out
	Level() bool                            // true = high
	Halt() error
	Close()
}

// gpioButton reads a GPIO button line: after each edge it lets the contacts
// settle, reads the level, and hands real changes to the gesture decoder.
type gpioButton struct {
	line      InputLine
	activeLow bool
	keys      *keyHandler
	settle    func() // waits SettleTime; tests make it instant
	stop      chan struct{}
	done      chan struct{}
	once      sync.Once
}

func startGPIOButton(line InputLine, activeLow bool, keys *keyHandler) *gpioButton {
	b := &gpioButton{line: line, activeLow: activeLow, keys: keys,
		settle: func() { time.Sleep(SettleTime) }, stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

func (b *gpioButton) pressed() bool { return b.line.Level() != b.activeLow }

func (b *gpioButton) run() {
	defer close(b.done)
	down := b.pressed()
	for {
		edge := b.line.WaitForEdge(0)
		select {
		case <-b.stop:
			return
		default:
		}
		if !edge {
			continue
		}
		b.settle()
		now := b.pressed()
		if now == down {
			continue // a bounce that came back
		}
		down = now
		v := int32(KeyReleased)
		if down {
			v = KeyPressed
		}
		b.keys.handle(InputEvent{Type: EvKey, Code: Btn0, Value: v})
	}
}

func (b *gpioButton) close() {
	b.once.Do(func() {
		close(b.stop)
		// Halt only interrupts a wait in progress; repeat it until the
		// reader, which may not have started waiting yet, is gone.
		for {
			b.line.Halt()
			select {
			case <-b.done:
				b.line.Close()
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}

// periphLine adapts a periph.io GPIO character-device line.
type periphLine struct{ l *gpioioctl.GPIOLine }

func (p periphLine) WaitForEdge(d time.Duration) bool { return p.l.WaitForEdge(d) }
func (p periphLine) Level() bool                      { return bool(p.l.Read()) }
func (p periphLine) Halt() error                      { return p.l.Halt() }
func (p periphLine) Close()                           { p.l.Close() }

var periphInit = sync.OnceValue(func() error {
	_, err := driverreg.Init()
	return err
})

// gpioLine finds BCM GPIO n on the SoC's GPIO chip (labelled pinctrl-bcm2835
// or pinctrl-bcm2711 on the Pi; periph sorts pinctrl-* chips first).
func gpioLine(n int) (*gpioioctl.GPIOLine, error) {
	if err := periphInit(); err != nil {
		return nil, fmt.Errorf("gpio: %w", err)
	}
	for _, c := range gpioioctl.Chips {
		if !strings.HasPrefix(c.Label(), "pinctrl-") {
			continue
		}
		if n < 0 || n >= c.LineCount() {
			return nil, fmt.Errorf("gpio %d: chip %s has %d lines", n, c.Label(), c.LineCount())
		}
		if l := c.ByNumber(n); l != nil {
			return l, nil
		}
	}
	return nil, fmt.Errorf("gpio %d: no SoC GPIO chip (pinctrl-*) in /dev/gpiochip*", n)
}

// OpenGPIOButton requests BCM GPIO n as a button input with both edges; an
// active-low button gets the pull-up, an active-high one the pull-down.
func OpenGPIOButton(n int, activeLow bool) (InputLine, error) {
	l, err := gpioLine(n)
	if err != nil {
		return nil, err
	}
	pull := gpio.PullDown
	if activeLow {
		pull = gpio.PullUp
	}
	if err := l.In(pull, gpio.BothEdges); err != nil {
		return nil, fmt.Errorf("gpio %d as button input: %w", n, err)
	}
	return periphLine{l}, nil
}

// SoftLED is an LED we can only switch on and off (a GPIO pin): patterns
// are stepped from a goroutine.
type SoftLED struct {
	Set func(on bool) error

	mu      sync.Mutex
	steady  bool
	lastFlk time.Time
	player  *stepPlayer
	release func()
}

// OpenGPIOLED drives an LED on BCM GPIO n (active high).
func OpenGPIOLED(n int) (*SoftLED, error) {
	l, err := gpioLine(n)
	if err != nil {
		return nil, err
	}
	if err := l.Out(gpio.Low); err != nil {
		return nil, fmt.Errorf("gpio %d as LED output: %w", n, err)
	}
	return &SoftLED{Set: func(on bool) error { return l.Out(gpio.Level(on)) }, release: l.Close}, nil
}

func (s *SoftLED) halt() {
	s.player.Stop()
	s.player = nil
}

// Show implements LEDDriver.
func (s *SoftLED) Show(p Pattern) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.halt()
	s.steady = p.Steady
	var steps []Step
	switch {
	case p.Steady:
		return s.Set(true)
	case len(p.Steps) > 0:
		steps = p.Steps
	case p.On > 0 || p.Off > 0:
		steps = []Step{{true, p.On}, {false, p.Off}}
	default:
		return s.Set(false)
	}
	s.player = playSteps(steps, func(on bool) { s.Set(on) })
	return nil
}

// Flicker implements LEDDriver.
func (s *SoftLED) Flicker() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.steady || time.Since(s.lastFlk) < 2*FlickerTime {
		return nil
	}
	s.lastFlk = time.Now()
	if err := s.Set(false); err != nil {
		return err
	}
	time.AfterFunc(FlickerTime, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.steady {
			s.Set(true)
		}
	})
	return nil
}

// Close implements LEDDriver: the LED goes dark and the pin is released.
func (s *SoftLED) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.halt()
	s.steady = false
	err := s.Set(false)
	if s.release != nil {
		s.release()
		s.release = nil
	}
	return err
}
