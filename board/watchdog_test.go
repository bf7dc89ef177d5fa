package board

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type fakeWatchdog struct {
	calls      []uint
	maxTimeout int32 // the driver clamps to this
	timeout    int32
	failSet    bool
}

func (f *fakeWatchdog) ioctl(fd uintptr, req uint, v *int32) error {
	f.calls = append(f.calls, req)
	switch req {
	case wdiocSetTimeout:
		if f.failSet {
			return errors.New("operation not supported")
		}
		f.timeout = min(*v, f.maxTimeout)
		*v = f.timeout
	case wdiocGetTimeout:
		*v = f.timeout
	}
	return nil
}

func TestWatchdogSetsTimeoutPetsAndMagicCloses(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "watchdog")
	os.WriteFile(dev, nil, 0o600)
	fw := &fakeWatchdog{maxTimeout: 15}
	w, err := openDevWatchdog(dev, WatchdogTimeout, fw.ioctl)
	if err != nil {
		t.Fatal(err)
	}
	if w.Timeout != 15*time.Second {
		t.Fatalf("timeout %v, want 15s", w.Timeout)
	}
	if err := w.Pet(); err != nil {
		t.Fatal(err)
	}
	want := []uint{wdiocSetTimeout, wdiocKeepalive, wdiocKeepalive}
	if len(fw.calls) != len(want) {
		t.Fatalf("ioctls %x, want %x", fw.calls, want)
	}
	for i := range want {
		if fw.calls[i] != want[i] {
			t.Fatalf("ioctls %x, want %x", fw.calls, want)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dev); string(b) != "V" {
		t.Fatalf("magic close wrote %q, want V", b)
	}
	if err := w.Pet(); err == nil {
		t.Fatal("pet after close succeeded")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestWatchdogKeepsDriverTimeoutWhenItCannotChange(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "watchdog")
	os.WriteFile(dev, nil, 0o600)
	fw := &fakeWatchdog{timeout: 30, failSet: true}
	w, err := openDevWatchdog(dev, WatchdogTimeout, fw.ioctl)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Timeout != 30*time.Second {
		t.Fatalf("timeout %v, want the driver's 30s", w.Timeout)
	}
}

func TestNoWatchdog(t *testing.T) {
	_, err := OpenDevWatchdog(filepath.Join(t.TempDir(), "watchdog"), WatchdogTimeout)
	if !errors.Is(err, ErrNoWatchdog) {
		t.Fatalf("missing device: %v, want ErrNoWatchdog", err)
	}
	s := NewSim()
	if _, err := s.OpenWatchdog(); !errors.Is(err, ErrNoWatchdog) {
		t.Fatalf("sim: %v, want ErrNoWatchdog", err)
	}
}

func TestWatchdogIoctlNumbers(t *testing.T) {
	// _IOR('W', 5, int), _IOWR('W', 6, int), _IOR('W', 7, int) from linux/watchdog.h.
	ior := func(nr uint) uint { return 2<<30 | 4<<16 | uint('W')<<8 | nr }
	iowr := func(nr uint) uint { return 3<<30 | 4<<16 | uint('W')<<8 | nr }
	if wdiocKeepalive != ior(5) || wdiocSetTimeout != iowr(6) || wdiocGetTimeout != ior(7) {
		t.Fatalf("ioctl numbers %x %x %x", wdiocKeepalive, wdiocSetTimeout, wdiocGetTimeout)
	}
}
