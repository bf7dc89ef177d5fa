package board

import (
	"fmt"
	"io"
	"log/slog"
	"os"
)

// Options override the detected board's hardware defaults (snodebox.toml
// [board]). Use DefaultOptions and change what the user set: GPIO numbers
// are BCM numbers and -1 means "none".
type Options struct {
	LED             string    // /sys/class/leds name ("" = ACT, then led0)
	LEDGPIO         int       // BCM GPIO driving an LED directly (-1 = none; used when no sysfs LED)
	ButtonGPIO      int       // BCM GPIO of a button wired without gpio-keys (-1 = none)
	ButtonActiveLow bool      // the button pulls the line low (pull-up enabled)
	Console         io.Writer // "snodebox: led STATE" lines (nil = stdout, PID 1's console)
	NoConsole       bool      // print no LED lines at all
}

// DefaultOptions is the detected board as it is.
func DefaultOptions() Options { return Options{LEDGPIO: -1, ButtonGPIO: -1} }

// Detect returns the board we run on, from /proc/device-tree/compatible:
// raspberrypi,3-model-b* → rpi3, raspberrypi,4-model-b → rpi4,
// linux,dummy-virt → qemu-virt, anything else → the simulated board.
// Hardware boards print "snodebox: led STATE" on stdout at every LED change
// (on qemu-virt that line is the LED).
func Detect(log *slog.Logger) Board { return DetectWith(log, DefaultOptions()) }

// DetectWith is Detect with the user's overrides.
func DetectWith(log *slog.Logger, opt Options) Board {
	return detect(SystemRoot, log, opt, OpenGPIOButton, OpenGPIOLED)
}

// DetectAt is Detect on another root (tests use a fake tree); LED lines go
// to console (nil: none). GPIO overrides are not available here.
func DetectAt(r Root, console io.Writer, log *slog.Logger) Board {
	opt := DefaultOptions()
	opt.Console, opt.NoConsole = console, console == nil
	return detect(r, log, opt, nil, nil)
}

func detect(r Root, log *slog.Logger, opt Options,
	openButton func(int, bool) (InputLine, error), openLED func(int) (*SoftLED, error)) Board {
	if log == nil {
		log = slog.Default()
	}
	info := ReadInfo(r)
	log = log.With("board", info.Name)
	cfg := HardwareConfig{Info: info, Root: r, Log: log, ButtonActiveLow: opt.ButtonActiveLow}
	switch {
	case opt.NoConsole:
	case opt.Console != nil:
		cfg.Console = opt.Console
	default:
		cfg.Console = os.Stdout
	}
	switch info.Name {
	case "rpi3", "rpi4":
		var err error
		if cfg.LED, err = piLED(r, opt, log, openLED); err != nil {
			log.Warn("status LED not found yet; LED states go to the console until it appears", "err", err)
			cfg.FindLED = func() (LEDDriver, error) { return piLED(r, opt, log, openLED) }
		}
		if opt.ButtonGPIO >= 0 && openButton != nil {
			if line, err := openButton(opt.ButtonGPIO, opt.ButtonActiveLow); err != nil {
				log.Warn("button GPIO unusable; buttons from gpio-keys only", "gpio", opt.ButtonGPIO, "err", err)
			} else {
				log.Info("button on GPIO", "gpio", opt.ButtonGPIO, "active_low", opt.ButtonActiveLow)
				cfg.Button = line
			}
		}
		return NewHardware(cfg)
	case "qemu-virt":
		// No LED on virt: the console line is the LED. The power key comes
		// from gpio-keys on the PL061 (evdev KEY_POWER).
		return NewHardware(cfg)
	default:
		log.Info("no known board; using the simulated board", "model", info.Model)
		return NewSim()
	}
}

func piLED(r Root, opt Options, log *slog.Logger, openLED func(int) (*SoftLED, error)) (LEDDriver, error) {
	dir, err := FindLED(r.Sys)
	if opt.LED != "" {
		dir, err = ledNamed(r.Sys, opt.LED)
	}
	if err == nil {
		led, oerr := OpenSysfsLED(dir)
		if oerr == nil {
			log.Info("status LED", "dir", dir, "pattern_trigger", led.HasTrigger("pattern"),
				"timer_trigger", led.HasTrigger("timer"), "oneshot_trigger", led.HasTrigger("oneshot"))
			return led, nil
		}
		err = oerr
	}
	if opt.LEDGPIO >= 0 && openLED != nil {
		led, gerr := openLED(opt.LEDGPIO)
		if gerr == nil {
			log.Info("status LED on GPIO", "gpio", opt.LEDGPIO)
			return led, nil
		}
		err = fmt.Errorf("%w; LED GPIO %d: %w", err, opt.LEDGPIO, gerr)
	}
	return nil, err
}
