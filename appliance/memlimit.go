package appliance

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// Memory soft limit bounds: the node's own memory (Go heap, stacks, TLS
// buffers) stays near a figure that leaves a 40 MiB RSS target room for the
// database pages it touches, whatever the board's RAM.
const (
	minMemoryLimit = 24 << 20
	maxMemoryLimit = 32 << 20
)

// memoryLimit is the Go soft memory limit for a machine with ram bytes:
// 1/32 of RAM within [24, 32] MiB.
func memoryLimit(ram uint64) int64 {
	l := int64(ram / 32)
	return max(minMemoryLimit, min(l, maxMemoryLimit))
}

// setMemoryLimit applies memoryLimit unless GOMEMLIMIT is set (the
// operator's word wins). The limit is soft: past it the collector works
// harder (at most half the CPU, by the runtime's own cap) instead of the
// heap growing; nothing fails.
func setMemoryLimit(ram uint64, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	l := memoryLimit(ram)
	debug.SetMemoryLimit(l)
	log.Info("memory soft limit", "bytes", l, "ram", ram)
}
