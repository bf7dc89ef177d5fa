package board

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// LEDDriver puts patterns on a physical LED.
type LEDDriver interface {
	Show(Pattern) error
	Flicker() error
	Close() error
}

// HardwareConfig describes a real board (Raspberry Pi, QEMU virt).
type HardwareConfig struct {
	Info Info
	Root Root
	// LED drives the status LED; nil: the board has none we can drive
	// (QEMU), and Console is how the state is shown.
	LED LEDDriver
	// FindLED, when LED is nil, is retried at LED changes and while input
	// devices are scanned for: leds-gpio may be a module PID 1 loads after
	// it opened the board.
	FindLED func() (LEDDriver, error)
	// Console gets "snodebox: led STATE" on every LED change (nil: none).
	Console io.Writer
	// Button is a button on a GPIO line (nil: buttons come from evdev only).
	Button          InputLine
	ButtonActiveLow bool
	// Watchdog is the watchdog device ("" = Root.Dev/watchdog).
	Watchdog string
	// ScanFor is how long after start new input devices are looked for
	// (modules may still be loading); 0 means 2 minutes.
	ScanFor time.Duration
	Log     *slog.Logger
}

// Hardware is a board with real devices: sysfs LED, evdev buttons,
// /dev/watchdog, device-tree identity and thermal zone.
type Hardware struct {
	cfg     HardwareConfig
	log     *slog.Logger
	mu      sync.Mutex
	led     LEDState
	overlay *Pattern // button-hold hint shown instead of the state
	actions chan Action
	keys    *keyHandler
	input   *inputWatcher
	button  *gpioButton
}

// NewHardware starts a board on real devices.
func NewHardware(cfg HardwareConfig) *Hardware {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Watchdog == "" {
		cfg.Watchdog = filepath.Join(cfg.Root.Dev, "watchdog")
	}
	if cfg.ScanFor == 0 {
		cfg.ScanFor = 2 * time.Minute
	}
	h := &Hardware{cfg: cfg, log: cfg.Log, actions: make(chan Action, 16)}
	h.led = -1 // so the first SetLED always shows
	// gpio-keys debounces in the kernel (debounce-interval) and GPIO lines
	// are settled before reading, so edges reaching the decoder are clean; a
	// second debounce would only eat quick taps. One decoder for all inputs.
	h.keys = &keyHandler{gestures: &Gestures{Clock: time.Now}, emit: h.emit, feedback: newFeedback(h.showOverlay)}
	h.input = newInputWatcher(cfg.Root, h.keys, cfg.Log)
	h.input.tick = h.retryLED
	go h.input.run(cfg.ScanFor)
	if cfg.Button != nil {
		h.button = startGPIOButton(cfg.Button, cfg.ButtonActiveLow, h.keys)
	}
	return h
}

func (h *Hardware) emit(a Action) {
	h.log.Debug("button", "action", a.String()) // PID 1 logs what it does with it
	select {
	case h.actions <- a:
	default:
		h.log.Warn("button action dropped: nobody is reading", "action", a.String())
	}
}

func (h *Hardware) Info() Info { return h.cfg.Info }

func (h *Hardware) SetLED(s LEDState) error {
	p, err := PatternFor(s)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s == h.led {
		return nil
	}
	h.led = s
	if h.cfg.Console != nil {
		fmt.Fprintf(h.cfg.Console, "snodebox: led %s\n", s)
	}
	if h.findLEDLocked() {
		return nil // found just now: it already shows s
	}
	if h.cfg.LED != nil && h.overlay == nil {
		if err := h.cfg.LED.Show(p); err != nil {
			return fmt.Errorf("show LED %s: %w", s, err)
		}
	}
	return nil
}

// findLEDLocked tries FindLED once if there is no LED yet and shows the
// current state on what it found; it reports whether it found one.
func (h *Hardware) findLEDLocked() bool {
	if h.cfg.LED != nil || h.cfg.FindLED == nil {
		return false
	}
	led, err := h.cfg.FindLED()
	if err != nil || led == nil {
		return false
	}
	h.cfg.LED = led
	if h.overlay != nil {
		if err := led.Show(*h.overlay); err != nil {
			h.log.Warn("show LED", "err", err)
		}
	} else if h.led >= 0 {
		p, _ := PatternFor(h.led)
		if err := led.Show(p); err != nil {
			h.log.Warn("show LED", "state", h.led.String(), "err", err)
		}
	}
	return true
}

// showOverlay puts a button-hold hint on the LED (nil: back to the state).
func (h *Hardware) showOverlay(p *Pattern) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.overlay = p
	if h.cfg.LED == nil {
		return
	}
	show := p
	if show == nil {
		if h.led < 0 {
			return
		}
		st, _ := PatternFor(h.led)
		show = &st
	}
	if err := h.cfg.LED.Show(*show); err != nil {
		h.log.Warn("show LED", "err", err)
	}
}

// retryLED is the scan loop's chance to find a late LED.
func (h *Hardware) retryLED() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.findLEDLocked()
}

func (h *Hardware) LED() LEDState {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.led < 0 {
		return LEDBooting
	}
	return h.led
}

func (h *Hardware) Traffic() {
	h.mu.Lock()
	led, healthy := h.cfg.LED, h.led == LEDHealthy && h.overlay == nil
	h.mu.Unlock()
	if led == nil || !healthy {
		return
	}
	// Flicker is rate-limited inside and never blocks on timing.
	led.Flicker()
}

func (h *Hardware) Actions() <-chan Action { return h.actions }

func (h *Hardware) OpenWatchdog() (Watchdog, error) {
	w, err := OpenDevWatchdog(h.cfg.Watchdog, WatchdogTimeout)
	if err != nil {
		return nil, err
	}
	h.log.Info("watchdog opened", "dev", h.cfg.Watchdog, "timeout", w.Timeout)
	return w, nil
}

func (h *Hardware) Temperature() (float64, bool) { return ReadTemperature(h.cfg.Root) }

func (h *Hardware) Close() error {
	h.input.close()
	if h.button != nil {
		h.button.close()
	}
	h.keys.feedback.stop()
	h.mu.Lock()
	led := h.cfg.LED
	h.mu.Unlock()
	if led != nil {
		return led.Close()
	}
	return nil
}

// inputWatcher finds button and power-key devices and reads them.
type inputWatcher struct {
	root Root
	keys *keyHandler
	log  *slog.Logger
	mu   sync.Mutex
	open map[string]*os.File
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	tick func() // called at every scan (nil: nothing)
}

func newInputWatcher(r Root, keys *keyHandler, log *slog.Logger) *inputWatcher {
	return &inputWatcher{
		root: r, log: log, open: map[string]*os.File{}, keys: keys,
		stop: make(chan struct{}),
	}
}

// run scans now and then every 2 s for scanFor: gpio_keys and evdev are
// modules and their devices show up when PID 1 gets to loading them.
func (iw *inputWatcher) run(scanFor time.Duration) {
	deadline := time.Now().Add(scanFor)
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		iw.scan()
		if iw.tick != nil {
			iw.tick()
		}
		if time.Now().After(deadline) {
			return
		}
		select {
		case <-iw.stop:
			return
		case <-t.C:
		}
	}
}

func (iw *inputWatcher) scan() {
	devs, err := ListInputDevices(iw.root.Sys, iw.root.Dev)
	if err != nil {
		iw.log.Debug("list input devices", "err", err)
		return
	}
	for _, d := range devs {
		power, button := d.Role()
		if !power && !button {
			continue
		}
		iw.mu.Lock()
		_, seen := iw.open[d.Event]
		iw.mu.Unlock()
		if seen {
			continue
		}
		f, err := os.Open(d.Node)
		if err != nil {
			iw.log.Debug("open input device", "dev", d.Node, "err", err)
			continue
		}
		iw.mu.Lock()
		select {
		case <-iw.stop:
			iw.mu.Unlock()
			f.Close()
			return
		default:
		}
		iw.open[d.Event] = f
		iw.wg.Add(1)
		iw.mu.Unlock()
		iw.log.Info("input device", "dev", d.Node, "name", d.Name, "power_key", power, "button", button)
		go iw.read(d, f)
	}
}

func (iw *inputWatcher) read(d InputDevice, f *os.File) {
	defer iw.wg.Done()
	err := ReadInputEvents(f, iw.keys.handle)
	select {
	case <-iw.stop:
	default:
		if !errors.Is(err, os.ErrClosed) {
			iw.log.Warn("input device stopped", "dev", d.Node, "err", err)
		}
		iw.mu.Lock()
		delete(iw.open, d.Event) // a later scan may find it again
		iw.mu.Unlock()
		f.Close()
	}
}

func (iw *inputWatcher) close() {
	iw.once.Do(func() {
		iw.mu.Lock()
		close(iw.stop)
		for _, f := range iw.open {
			f.Close()
		}
		iw.mu.Unlock()
		iw.wg.Wait()
	})
}
