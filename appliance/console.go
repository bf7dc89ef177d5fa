// Package appliance is PID 1's life: the boot sequence (Boot), hosted mode
// (RunHosted), supervision of the node services, health and the LED, button
// actions, the status report and clean shutdown. Leaf work lives in
// appliance/config, appliance/supervise, appliance/health, appliance/tuning,
// netstack/link and netstack/clock; this package puts them in order.
package appliance

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// Console markers (contract (h)) are plain lines QEMU tests wait for; they
// are written whole, under a lock, so log lines never split them.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

var markers = &console{w: os.Stdout}

func (c *console) mark(format string, args ...any) {
	line := "snodebox: " + fmt.Sprintf(format, args...) + "\n"
	c.mu.Lock()
	defer c.mu.Unlock()
	io.WriteString(c.w, line)
}

// lockedWriter serialises log output with the markers on the same console.
type lockedWriter struct{ c *console }

func (l lockedWriter) Write(p []byte) (int, error) {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	return l.c.w.Write(p)
}
