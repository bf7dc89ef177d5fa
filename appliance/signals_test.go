package appliance

import (
	"context"
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSignalsAskForRebootOrPowerOff(t *testing.T) {
	tests := []struct {
		sig  os.Signal
		want uintptr
	}{
		{syscall.SIGTERM, unix.LINUX_REBOOT_CMD_RESTART},
		{syscall.SIGUSR2, unix.LINUX_REBOOT_CMD_POWER_OFF},
	}
	for _, tc := range tests {
		got := make(chan uintptr, 1)
		rt := &app{log: slog.New(slog.NewTextHandler(io.Discard, nil)), device: &device{reaper: newReaper(nil)}}
		rt.sigTarget = func(cmd uintptr) { got <- cmd }
		sigs := make(chan os.Signal, 2)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { rt.reap(ctx, sigs); close(done) }()
		sigs <- syscall.SIGCHLD // reaps (nothing to reap here), asks for nothing
		sigs <- tc.sig
		if cmd := <-got; cmd != tc.want {
			t.Errorf("%v asked for reboot cmd %#x, want %#x", tc.sig, cmd, tc.want)
		}
		cancel()
		<-done
	}
}

func TestMemoryLimitFollowsRAM(t *testing.T) {
	for _, tc := range []struct {
		ram  uint64
		want int64
	}{{512 << 20, 24 << 20}, {1 << 30, 24 << 20}, {2 << 30, 32 << 20}, {3 << 30, 48 << 20}, {8 << 30, 48 << 20}, {0, 24 << 20}} {
		if got := memoryLimit(tc.ram); got != tc.want {
			t.Errorf("memoryLimit(%d MiB) = %d MiB, want %d", tc.ram>>20, got>>20, tc.want>>20)
		}
	}
}
