package board

import (
	"log/slog"
	"os"
)

// Detect returns the board we run on, from /proc/device-tree/compatible:
// raspberrypi,3-model-b* → rpi3, raspberrypi,4-model-b → rpi4,
// linux,dummy-virt → qemu-virt, anything else → the simulated board.
func Detect(log *slog.Logger) Board {
	return DetectAt(SystemRoot, os.Stdout, log)
}

// DetectAt is Detect on another root, with the console LED changes are
// printed on ("snodebox: led STATE").
func DetectAt(r Root, console *os.File, log *slog.Logger) Board {
	if log == nil {
		log = slog.Default()
	}
	info := ReadInfo(r)
	log = log.With("board", info.Name)
	cfg := HardwareConfig{Info: info, Root: r, Log: log}
	if console != nil {
		cfg.Console = console
	}
	switch info.Name {
	case "rpi3", "rpi4":
		if dir, err := FindLED(r.Sys); err != nil {
			log.Warn("status LED not found; LED states go to the console only", "err", err)
		} else if led, err := OpenSysfsLED(dir); err != nil {
			log.Warn("status LED unusable; LED states go to the console only", "err", err)
		} else {
			log.Info("status LED", "dir", dir, "pattern_trigger", led.HasTrigger("pattern"),
				"timer_trigger", led.HasTrigger("timer"), "oneshot_trigger", led.HasTrigger("oneshot"))
			cfg.LED = led
		}
		return NewHardware(cfg)
	case "qemu-virt":
		// No LED on virt: the console line is the LED.
		return NewHardware(cfg)
	default:
		log.Info("no known board; using the simulated board", "model", info.Model)
		return NewSim()
	}
}
