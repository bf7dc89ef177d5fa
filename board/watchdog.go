package board

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Watchdog ioctls (include/uapi/linux/watchdog.h).
const (
	wdiocKeepalive  uint = 0x80045705 // _IOR('W', 5, int)
	wdiocSetTimeout uint = 0xC0045706 // _IOWR('W', 6, int)
	wdiocGetTimeout uint = 0x80045707 // _IOR('W', 7, int)
)

// WatchdogTimeout is what we ask for: bcm2835's maximum is about 16 s, and
// PID 1 pets every second, so 15 s rides out a stall of many seconds
// without letting a hung node sit for long.
const WatchdogTimeout = 15 * time.Second

// DevWatchdog is an open /dev/watchdog.
type DevWatchdog struct {
	mu      sync.Mutex
	f       *os.File
	ioctl   func(fd uintptr, req uint, v *int32) error
	Timeout time.Duration // as the driver reports it after setting
}

// OpenDevWatchdog opens a watchdog device, asks for timeout and reads back
// what the driver granted. A missing device is ErrNoWatchdog.
func OpenDevWatchdog(path string, timeout time.Duration) (*DevWatchdog, error) {
	return openDevWatchdog(path, timeout, ioctlInt)
}

func openDevWatchdog(path string, timeout time.Duration, ioctl func(uintptr, uint, *int32) error) (*DevWatchdog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) {
		return nil, ErrNoWatchdog
	}
	if err != nil {
		return nil, fmt.Errorf("open watchdog %s: %w", path, err)
	}
	w := &DevWatchdog{f: f, ioctl: ioctl}
	secs := int32(timeout / time.Second)
	if err := ioctl(f.Fd(), wdiocSetTimeout, &secs); err != nil {
		// Not every driver can change its timeout; it keeps its own then.
		secs = 0
		if gerr := ioctl(f.Fd(), wdiocGetTimeout, &secs); gerr != nil {
			secs = 0
		}
	}
	w.Timeout = time.Duration(secs) * time.Second
	if err := w.Pet(); err != nil {
		// Close without the magic character: the device is armed by opening
		// it, and we cannot tell it apart from a hang anyway.
		f.Close()
		return nil, err
	}
	return w, nil
}

func ioctlInt(fd uintptr, req uint, v *int32) error {
	n := int(*v)
	var err error
	switch req {
	case wdiocSetTimeout:
		err = unix.IoctlSetPointerInt(int(fd), req, n)
		if err == nil {
			n, err = unix.IoctlGetInt(int(fd), wdiocGetTimeout)
		}
	case wdiocGetTimeout:
		n, err = unix.IoctlGetInt(int(fd), req)
	default:
		_, err = unix.IoctlGetInt(int(fd), req)
	}
	*v = int32(n)
	return err
}

// Pet keeps the board from resetting for another Timeout.
func (w *DevWatchdog) Pet() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return errors.New("watchdog closed")
	}
	var dummy int32
	if err := w.ioctl(w.f.Fd(), wdiocKeepalive, &dummy); err != nil {
		return fmt.Errorf("pet watchdog: %w", err)
	}
	return nil
}

// Close disarms the watchdog with the magic close: write 'V', then close.
// (A driver built with nowayout keeps running and resets after Timeout; the
// caller is rebooting then anyway.)
func (w *DevWatchdog) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	_, err := w.f.Write([]byte("V"))
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err != nil {
		return fmt.Errorf("close watchdog: %w", err)
	}
	return nil
}
