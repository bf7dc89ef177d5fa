package board

import (
	"bytes"
	"testing"
)

// Whatever a sysfs file or an input device hands us, parsing never panics.
func FuzzParseKeyBitmap(f *testing.F) {
	f.Add("10000000000000 0")
	f.Add("1 0 0 0 0")
	f.Add("7 ff9f207ac14057ff febeffdfffefffff fffffffffffffffe")
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := ParseKeyBitmap(s, 64)
		if err == nil && len(keys) > 64*len(s) {
			t.Fatalf("%d keys from %q", len(keys), s)
		}
	})
}

func FuzzReadInputEvents(f *testing.F) {
	f.Add(rawEvent(1, 2, EvKey, KeyPower, KeyPressed))
	f.Add(append(rawEvent(1, 2, EvKey, Btn0, KeyPressed), rawEvent(3, 4, EvKey, Btn0, KeyReleased)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		var acts []Action
		h := &keyHandler{gestures: NewGestures(), emit: func(a Action) { acts = append(acts, a) }}
		ReadInputEvents(bytes.NewReader(b), h.handle)
		if len(acts) > len(b)/InputEventSize {
			t.Fatalf("%d actions from %d events", len(acts), len(b)/InputEventSize)
		}
	})
}
