package board

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// rawEvent is struct input_event as a 64-bit little-endian kernel writes it.
func rawEvent(sec, usec int64, typ, code uint16, value int32) []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint64(b, uint64(sec))
	binary.LittleEndian.PutUint64(b[8:], uint64(usec))
	binary.LittleEndian.PutUint16(b[16:], typ)
	binary.LittleEndian.PutUint16(b[18:], code)
	binary.LittleEndian.PutUint32(b[20:], uint32(value))
	return b
}

func TestParseInputEvent(t *testing.T) {
	// KEY_POWER pressed at 1700000000.250000, bytes as read from /dev/input/event0.
	raw := []byte{
		0x00, 0xf1, 0x53, 0x65, 0, 0, 0, 0, // tv_sec 1700000000
		0x90, 0xd0, 0x03, 0, 0, 0, 0, 0, // tv_usec 250000
		0x01, 0x00, // EV_KEY
		0x74, 0x00, // KEY_POWER (116)
		0x01, 0x00, 0x00, 0x00, // pressed
	}
	ev, err := ParseInputEvent(raw, 8)
	if err != nil {
		t.Fatal(err)
	}
	want := InputEvent{Time: time.Unix(1700000000, 250000000), Type: EvKey, Code: KeyPower, Value: KeyPressed}
	if !ev.Time.Equal(want.Time) || ev.Type != want.Type || ev.Code != want.Code || ev.Value != want.Value {
		t.Fatalf("got %+v, want %+v", ev, want)
	}
	// 32-bit layout: 16 bytes.
	raw32 := append(append([]byte{0x00, 0xf1, 0x53, 0x65, 0x90, 0xd0, 0x03, 0x00}, raw[16:20]...), 0, 0, 0, 0)
	ev, err = ParseInputEvent(raw32, 4)
	if err != nil || ev.Code != KeyPower || ev.Value != KeyReleased || !ev.Time.Equal(want.Time) {
		t.Fatalf("32-bit: %+v, %v", ev, err)
	}
	if _, err := ParseInputEvent(raw[:20], 8); err == nil {
		t.Fatal("short event accepted")
	}
}

func TestReadInputEventsStream(t *testing.T) {
	if bits.UintSize != 64 {
		t.Skip("stream bytes below are the 64-bit layout")
	}
	var stream bytes.Buffer
	stream.Write(rawEvent(1, 0, EvKey, Btn0, KeyPressed))
	stream.Write(rawEvent(1, 0, EvSyn, 0, 0))
	stream.Write(rawEvent(1, 500, EvKey, Btn0, KeyRepeat))
	stream.Write(rawEvent(2, 0, EvKey, Btn0, KeyReleased))
	var got []InputEvent
	err := ReadInputEvents(&stream, func(ev InputEvent) { got = append(got, ev) })
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v", err)
	}
	if len(got) != 4 || got[0].Code != Btn0 || got[0].Value != KeyPressed || got[3].Value != KeyReleased || got[1].Type != EvSyn {
		t.Fatalf("events %+v", got)
	}
}

func TestKeyHandlerMapsKeys(t *testing.T) {
	c := &fakeClock{t: time.Unix(100, 0)}
	var got []Action
	h := &keyHandler{gestures: &Gestures{Clock: c.now, Debounce: DefaultDebounce}, emit: func(a Action) { got = append(got, a) }}
	h.handle(InputEvent{Type: EvKey, Code: KeyPower, Value: KeyPressed})
	h.handle(InputEvent{Type: EvKey, Code: KeyPower, Value: KeyReleased})
	h.handle(InputEvent{Type: EvKey, Code: Btn0, Value: KeyPressed})
	for range 5 { // autorepeat while held is not more presses
		c.advance(time.Second)
		h.handle(InputEvent{Type: EvKey, Code: Btn0, Value: KeyRepeat})
	}
	c.advance(500 * time.Millisecond)
	h.handle(InputEvent{Type: EvSyn})
	h.handle(InputEvent{Type: EvKey, Code: Btn0, Value: KeyReleased})
	want := []Action{ActionPowerOff, ActionReboot}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("actions %v, want %v", got, want)
	}
}

func TestParseKeyBitmap(t *testing.T) {
	// gpio-keys on QEMU virt with only KEY_POWER: bit 116 is word 1, bit 52.
	keys, err := ParseKeyBitmap("10000000000000 0\n", 64)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !keys[KeyPower] {
		t.Fatalf("keys %v, want only KEY_POWER", keys)
	}
	// BTN_0 (256) is word 4 bit 0.
	keys, err = ParseKeyBitmap("1 0 0 0 0", 64)
	if err != nil || len(keys) != 1 || !keys[Btn0] {
		t.Fatalf("keys %v, %v, want only BTN_0", keys, err)
	}
	if _, err := ParseKeyBitmap("zz", 64); err == nil {
		t.Fatal("garbage bitmap accepted")
	}
}

// fakeInput adds /sys/class/input/eventN for a device with the given key bitmap.
func fakeInput(t *testing.T, root, ev, name, keys string) {
	mkfiles(t, filepath.Join(root, "sys", "class", "input", ev, "device"), map[string]string{
		"name": name + "\n", "capabilities/key": keys + "\n",
	})
}

func TestListInputDevicesRoles(t *testing.T) {
	root := t.TempDir()
	fakeInput(t, root, "event0", "gpio-keys", "10000000000000 0")
	fakeInput(t, root, "event1", "button@17", "1 0 0 0 0")
	// A USB keyboard: many keys, never our button.
	fakeInput(t, root, "event2", "USB Keyboard", "7 ff9f207ac14057ff febeffdfffefffff fffffffffffffffe")
	mkfiles(t, filepath.Join(root, "sys", "class", "input", "mouse0"), map[string]string{"dev": "13:32"})
	r := RootAt(root)
	devs, err := ListInputDevices(r.Sys, r.Dev)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string][2]bool{}
	for _, d := range devs {
		p, b := d.Role()
		roles[d.Name] = [2]bool{p, b}
		if d.Node != filepath.Join(r.Dev, "input", d.Event) {
			t.Errorf("node %q", d.Node)
		}
	}
	want := map[string][2]bool{"gpio-keys": {true, false}, "button@17": {false, true}, "USB Keyboard": {false, false}}
	if len(roles) != len(want) {
		t.Fatalf("roles %v, want %v", roles, want)
	}
	for n, w := range want {
		if roles[n] != w {
			t.Errorf("%s: (power, button) = %v, want %v", n, roles[n], w)
		}
	}
}

// The whole path on a fake tree: a FIFO stands in for /dev/input/event0.
func TestHardwareReadsPowerKeyAndButton(t *testing.T) {
	root := t.TempDir()
	fakeInput(t, root, "event0", "gpio-keys", "10000000000000 0")
	fakeInput(t, root, "event1", "button", "1 0 0 0 0")
	r := RootAt(root)
	for _, ev := range []string{"event0", "event1"} {
		os.MkdirAll(filepath.Join(r.Dev, "input"), 0o755)
		if err := syscall.Mkfifo(filepath.Join(r.Dev, "input", ev), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := NewHardware(HardwareConfig{Info: Info{Name: "qemu-virt"}, Root: r})
	defer h.Close()

	power, err := os.OpenFile(filepath.Join(r.Dev, "input", "event0"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer power.Close()
	power.Write(append(rawEvent(5, 0, EvKey, KeyPower, KeyPressed), rawEvent(5, 0, EvSyn, 0, 0)...))
	if a := <-h.Actions(); a != ActionPowerOff {
		t.Fatalf("power key gave %v", a)
	}

	btn, err := os.OpenFile(filepath.Join(r.Dev, "input", "event1"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer btn.Close()
	btn.Write(rawEvent(6, 0, EvKey, Btn0, KeyPressed))
	btn.Write(rawEvent(6, 0, EvSyn, 0, 0))
	btn.Write(rawEvent(6, 100000, EvKey, Btn0, KeyReleased))
	if a := <-h.Actions(); a != ActionStatus {
		t.Fatalf("short press gave %v", a)
	}
}
