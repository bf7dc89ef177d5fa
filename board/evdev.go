package board

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Linux input event types and key codes (include/uapi/linux/input-event-codes.h).
const (
	EvSyn      = 0x00
	EvKey      = 0x01
	KeyPower   = 116
	KeyProg1   = 148
	KeyRestart = 0x198
	Btn0       = 0x100
)

// InputEvent is struct input_event.
type InputEvent struct {
	Time  time.Time
	Type  uint16
	Code  uint16
	Value int32
}

// Key values of EV_KEY events.
const (
	KeyReleased = 0
	KeyPressed  = 1
	KeyRepeat   = 2
)

// InputEventSize is sizeof(struct input_event) for this process: a struct
// timeval of two longs, then u16 type, u16 code, s32 value.
const InputEventSize = 2*bits.UintSize/8 + 8

// ParseInputEvent decodes one struct input_event in native (little-endian,
// as on arm64 and amd64) byte order, for longs of wordBytes (8 on 64-bit).
func ParseInputEvent(b []byte, wordBytes int) (InputEvent, error) {
	if wordBytes != 4 && wordBytes != 8 {
		return InputEvent{}, fmt.Errorf("input_event: word size %d", wordBytes)
	}
	if len(b) < 2*wordBytes+8 {
		return InputEvent{}, fmt.Errorf("input_event: %d bytes, want %d", len(b), 2*wordBytes+8)
	}
	var sec, usec int64
	if wordBytes == 8 {
		sec, usec = int64(binary.LittleEndian.Uint64(b)), int64(binary.LittleEndian.Uint64(b[8:]))
	} else {
		sec, usec = int64(int32(binary.LittleEndian.Uint32(b))), int64(int32(binary.LittleEndian.Uint32(b[4:])))
	}
	o := 2 * wordBytes
	return InputEvent{
		Time:  time.Unix(sec, usec*1000),
		Type:  binary.LittleEndian.Uint16(b[o:]),
		Code:  binary.LittleEndian.Uint16(b[o+2:]),
		Value: int32(binary.LittleEndian.Uint32(b[o+4:])),
	}, nil
}

// ReadInputEvents reads whole events from r until it fails, calling fn for
// each (evdev hands out whole events per read, so one event per read is fine).
func ReadInputEvents(r io.Reader, fn func(InputEvent)) error {
	buf := make([]byte, InputEventSize)
	for {
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		ev, err := ParseInputEvent(buf, bits.UintSize/8)
		if err != nil {
			return err
		}
		fn(ev)
	}
}

// InputDevice is an evdev node with the keys it reports.
type InputDevice struct {
	Event string // "event0"
	Node  string // /dev/input/event0
	Name  string
	Keys  map[uint16]bool
}

// ParseKeyBitmap reads a sysfs capabilities/key bitmap: hex words, most
// significant first, each wordBits wide.
func ParseKeyBitmap(s string, wordBits int) (map[uint16]bool, error) {
	keys := map[uint16]bool{}
	words := strings.Fields(s)
	for i := range words {
		w, err := strconv.ParseUint(words[len(words)-1-i], 16, wordBits)
		if err != nil {
			return nil, fmt.Errorf("key bitmap word %q: %w", words[len(words)-1-i], err)
		}
		for b := 0; b < wordBits; b++ {
			if w&(1<<b) != 0 {
				keys[uint16(i*wordBits+b)] = true
			}
		}
	}
	return keys, nil
}

// ListInputDevices reads every evdev device from sysRoot/class/input
// (device nodes are looked for under devRoot/input).
func ListInputDevices(sysRoot, devRoot string) ([]InputDevice, error) {
	matches, err := filepath.Glob(filepath.Join(sysRoot, "class", "input", "event*"))
	if err != nil {
		return nil, err
	}
	var out []InputDevice
	for _, m := range matches {
		ev := filepath.Base(m)
		name, _ := os.ReadFile(filepath.Join(m, "device", "name"))
		capb, err := os.ReadFile(filepath.Join(m, "device", "capabilities", "key"))
		if err != nil {
			continue // no EV_KEY: not a button
		}
		keys, err := ParseKeyBitmap(string(capb), bits.UintSize)
		if err != nil {
			continue
		}
		out = append(out, InputDevice{
			Event: ev, Node: filepath.Join(devRoot, "input", ev),
			Name: strings.TrimSpace(string(name)), Keys: keys,
		})
	}
	return out, nil
}

// maxButtonKeys: a device with more keys than this is a keyboard, not our
// button; a USB keyboard must not reboot the node by someone typing.
const maxButtonKeys = 8

// Role is what a device is to us.
func (d InputDevice) Role() (power, button bool) {
	if len(d.Keys) == 0 || len(d.Keys) > maxButtonKeys {
		return false, false
	}
	power = d.Keys[KeyPower]
	for k := range d.Keys {
		if k != KeyPower {
			button = true
		}
	}
	return power, button
}

// keyHandler turns key events into Actions: KEY_POWER presses are power
// offs, any other key of a button device feeds the gesture decoder.
type keyHandler struct {
	mu       sync.Mutex // devices are read concurrently, the decoder is one
	gestures *Gestures
	emit     func(Action)
	feedback *feedback // LED hints while held; nil: none
}

func (h *keyHandler) handle(ev InputEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ev.Type != EvKey || ev.Value == KeyRepeat {
		return
	}
	if ev.Code == KeyPower {
		if ev.Value == KeyPressed {
			h.emit(ActionPowerOff)
		}
		return
	}
	switch ev.Value {
	case KeyPressed:
		h.gestures.Press()
		if h.feedback != nil {
			h.feedback.pressed()
		}
	case KeyReleased:
		a, ok := h.gestures.Release()
		if h.feedback != nil {
			h.feedback.released(h.gestures.Armed())
		}
		if ok {
			h.emit(a)
		}
	}
}
