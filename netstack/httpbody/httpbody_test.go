package httpbody

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestReadWhateverTheDeclaredLength(t *testing.T) {
	const limit = 100_000
	for _, tc := range []struct {
		name     string
		body     int
		declared int64
	}{
		{"empty", 0, 0},
		{"declared", 1500, 1500},
		{"unknown length", 70_000, -1},
		{"shorter than declared", 10, 20},
		{"longer than declared", 3000, 1000},
		{"declared beyond the limit", 3000, limit + 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Repeat([]byte{7}, tc.body)
			out, err := Read(bytes.NewReader(in), tc.declared, limit)
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("read %d bytes (%v), want %d", len(out), err, len(in))
			}
		})
	}
}

func TestReadStopsAtTheLimit(t *testing.T) {
	for _, declared := range []int64{-1, 10, 999, 1000, 5000} {
		out, err := Read(zeros{}, declared, 1000)
		if err != nil || len(out) != 1000 {
			t.Fatalf("declared %d: read %d bytes (%v), want the limit", declared, len(out), err)
		}
	}
}

func TestReadPassesErrorsOn(t *testing.T) {
	boom := errors.New("connection reset")
	out, err := Read(io.MultiReader(bytes.NewReader([]byte("abc")), failing{boom}), 10, 100)
	if !errors.Is(err, boom) || string(out) != "abc" {
		t.Fatalf("got %q, %v; want the bytes before the error and the error", out, err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type failing struct{ err error }

func (f failing) Read([]byte) (int, error) { return 0, f.err }
