// Package logring keeps the node's recent log lines in RAM. On a device the
// logs live only in memory (no writes to the SD card for logging); the status
// page shows the ring's tail.
package logring

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// MaxLineBytes caps one stored line so the ring's memory stays bounded at
// about lines × MaxLineBytes whatever gets logged.
const MaxLineBytes = 1024

// Ring is a fixed-size ring of formatted log lines, safe for concurrent use.
type Ring struct {
	mu    sync.Mutex
	lines []string
	next  int // slot the next line goes to
	full  bool
	total uint64
}

// New returns a ring keeping the last lines lines (at least 1).
func New(lines int) *Ring {
	return &Ring{lines: make([]string, max(lines, 1))}
}

// Add stores one line (trailing newlines trimmed, long lines cut).
func (r *Ring) Add(line string) {
	line = strings.TrimRight(line, "\r\n")
	if len(line) > MaxLineBytes {
		line = truncate(line, MaxLineBytes-len("…")) + "…"
	}
	// Copy so the ring never pins a caller's larger buffer.
	line = strings.Clone(line)
	r.mu.Lock()
	r.lines[r.next] = line
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
	r.total++
	r.mu.Unlock()
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// Write stores p as lines, so a slog.TextHandler (one Write per record) can
// write straight into the ring.
func (r *Ring) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		r.Add(l)
	}
	return len(p), nil
}

// Lines returns the stored lines, oldest first.
func (r *Ring) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]string(nil), r.lines[:r.next]...)
	}
	out := make([]string, 0, len(r.lines))
	out = append(out, r.lines[r.next:]...)
	return append(out, r.lines[:r.next]...)
}

// Total is how many lines were ever added (dropped ones included).
func (r *Ring) Total() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// Handler returns an slog.Handler that formats records at Info and above
// into the ring (logfmt, like slog.TextHandler) and passes every record on to
// next (nil: the ring only).
func (r *Ring) Handler(next slog.Handler) slog.Handler {
	return r.HandlerLevel(next, slog.LevelInfo)
}

// HandlerLevel is Handler with the ring's minimum level chosen.
func (r *Ring) HandlerLevel(next slog.Handler, level slog.Leveler) slog.Handler {
	return &tee{ring: slog.NewTextHandler(r, &slog.HandlerOptions{Level: level}), next: next}
}

type tee struct {
	ring slog.Handler
	next slog.Handler
}

func (t *tee) Enabled(ctx context.Context, l slog.Level) bool {
	return t.ring.Enabled(ctx, l) || (t.next != nil && t.next.Enabled(ctx, l))
}

func (t *tee) Handle(ctx context.Context, rec slog.Record) error {
	if t.ring.Enabled(ctx, rec.Level) {
		// The ring never fails; its error is not worth losing the record for.
		_ = t.ring.Handle(ctx, rec.Clone())
	}
	if t.next != nil && t.next.Enabled(ctx, rec.Level) {
		return t.next.Handle(ctx, rec)
	}
	return nil
}

func (t *tee) WithAttrs(as []slog.Attr) slog.Handler {
	n := &tee{ring: t.ring.WithAttrs(as)}
	if t.next != nil {
		n.next = t.next.WithAttrs(as)
	}
	return n
}

func (t *tee) WithGroup(name string) slog.Handler {
	n := &tee{ring: t.ring.WithGroup(name)}
	if t.next != nil {
		n.next = t.next.WithGroup(name)
	}
	return n
}
