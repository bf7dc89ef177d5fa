// Package board is snodebox's hardware layer: the status LED, the button, the
// hardware watchdog, board identity and temperature (DESIGN §4). Detect picks
// the implementation for the machine we run on: a Raspberry Pi (sysfs LED
// with kernel triggers, gpio-keys/evdev or a GPIO line for the button,
// bcm2835 watchdog), QEMU's virt machine (LED shown on the console, power key
// from evdev) or a simulated board (hosted mode and tests).
package board

import (
	"errors"
	"fmt"
)

// LEDState is what the one status LED tells the user (DESIGN §4 table).
type LEDState int

const (
	LEDBooting   LEDState = iota // fast blink
	LEDNoNetwork                 // two short blinks, pause (no network or no time)
	LEDSyncing                   // slow blink (not yet in a swarm, syncing)
	LEDHealthy                   // on, brief flicker on traffic
	LEDUpdating                  // alternating short/long
	LEDDegraded                  // three short blinks, pause
)

var ledNames = [...]string{"booting", "no-network", "syncing", "healthy", "updating", "degraded"}

func (s LEDState) String() string {
	if s >= 0 && int(s) < len(ledNames) {
		return ledNames[s]
	}
	return fmt.Sprintf("led(%d)", int(s))
}

// ParseLEDState reads the String form back.
func ParseLEDState(name string) (LEDState, error) {
	for i, n := range ledNames {
		if n == name {
			return LEDState(i), nil
		}
	}
	return 0, fmt.Errorf("unknown LED state %q", name)
}

// Valid reports whether s is one of the defined states.
func (s LEDState) Valid() bool { return s >= 0 && int(s) < len(ledNames) }

// Action is a decoded button gesture.
type Action int

const (
	ActionStatus       Action = iota // short press: blink a status code, log it
	ActionReboot                     // hold 5 s: clean reboot
	ActionFactoryReset               // hold 15 s, then press again within 10 s
	ActionPowerOff                   // power key: clean power off
)

var actionNames = [...]string{"status", "reboot", "factory-reset", "power-off"}

func (a Action) String() string {
	if a >= 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Info identifies the board.
type Info struct {
	Name   string `json:"name"` // "rpi3", "rpi4", "qemu-virt", "sim"
	Model  string `json:"model"`
	Serial string `json:"serial"`
}

// Watchdog is an opened hardware watchdog. Close does the magic close so a
// clean shutdown does not end in a watchdog reset.
type Watchdog interface {
	Pet() error
	Close() error
}

// ErrNoWatchdog is returned by OpenWatchdog when the board has none.
var ErrNoWatchdog = errors.New("board has no hardware watchdog")

// Board is the hardware seen by PID 1 and the status page.
type Board interface {
	Info() Info
	SetLED(LEDState) error
	LED() LEDState
	Traffic()               // brief flicker on traffic while healthy
	Actions() <-chan Action // button gestures, already decoded and debounced
	OpenWatchdog() (Watchdog, error)
	Temperature() (celsius float64, ok bool)
	Close() error
}

func errInvalidLED(s LEDState) error { return fmt.Errorf("invalid LED state %d", int(s)) }
