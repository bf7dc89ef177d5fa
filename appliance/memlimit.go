package appliance

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// Memory soft limit bounds. On the boards snodebox starts with (Pi 3,
// 1 GiB) the node's own memory (Go heap, stacks, TLS buffers) is held to
// 24 MiB, which leaves a 40 MiB RSS target room for the database pages it
// touches; boards with more RAM give the collector more slack.
//
// Measured with BenchmarkSnoded (100,000 stores, 16 then 64 clients):
// 24 MiB took RssAnon from 20 to 17 MiB mean and from 25.5 to 20 peak at
// no measurable CPU cost (271–287 µs per store against 268–284 without);
// 20 MiB cost 70 % more CPU per store at 64 clients and 16 MiB nearly
// three times as much, the collector running back to back.
const (
	minMemoryLimit = 24 << 20
	maxMemoryLimit = 48 << 20
)

// memoryLimit is the Go soft memory limit for a machine with ram bytes:
// 1/64 of RAM within [24, 48] MiB (1 GiB: 24, 2 GiB: 32, 4 GiB and up: 48).
func memoryLimit(ram uint64) int64 {
	l := int64(ram / 64)
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
