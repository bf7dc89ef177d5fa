package status

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"sync"
	"time"
)

// Sample is one point of the status page's history.
type Sample struct {
	At           time.Time `json:"at"`
	StoresPerSec float64   `json:"stores_per_s"`
	Messages     int64     `json:"messages"`
	DiskUsed     uint64    `json:"disk_used_bytes"`
	TemperatureC *float64  `json:"temperature_c,omitempty"`
}

// History is a RAM ring of samples: the last hour at one sample every
// 30 s is 120 points, a few KiB.
type History struct {
	mu      sync.Mutex
	ring    []Sample
	next    int
	full    bool
	last    time.Time
	lastCnt int64
}

// HistoryLen and HistoryEvery: an hour of history.
const (
	HistoryLen   = 120
	HistoryEvery = 30 * time.Second
)

// NewHistory returns an empty ring.
func NewHistory() *History { return &History{ring: make([]Sample, HistoryLen)} }

// Add records a sample; stores is the node's running store count, from
// which the rate since the previous sample is computed.
func (h *History) Add(at time.Time, stores, messages int64, diskUsed uint64, temp *float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Sample{At: at, Messages: messages, DiskUsed: diskUsed, TemperatureC: temp}
	if !h.last.IsZero() && at.After(h.last) && stores >= h.lastCnt {
		s.StoresPerSec = float64(stores-h.lastCnt) / at.Sub(h.last).Seconds()
	}
	h.last, h.lastCnt = at, stores
	h.ring[h.next] = s
	h.next = (h.next + 1) % len(h.ring)
	if h.next == 0 {
		h.full = true
	}
}

// Samples returns the samples oldest first.
func (h *History) Samples() []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.full {
		return append([]Sample(nil), h.ring[:h.next]...)
	}
	return append(append([]Sample(nil), h.ring[h.next:]...), h.ring[:h.next]...)
}

// Graph is one small chart of the page.
type Graph struct {
	Title string
	Now   string // the latest value, in words
	SVG   template.HTML
}

// Graphs draws the history as plain inline SVG (no scripts, no external
// assets): stores per second, messages held, disk used and temperature.
func Graphs(samples []Sample) []Graph {
	if len(samples) < 2 {
		return nil
	}
	series := []struct {
		title string
		val   func(Sample) (float64, bool)
		unit  func(float64) string
	}{
		{"stores/s", func(s Sample) (float64, bool) { return s.StoresPerSec, true }, func(v float64) string { return fmt.Sprintf("%.1f/s", v) }},
		{"messages held", func(s Sample) (float64, bool) { return float64(s.Messages), true }, func(v float64) string { return fmt.Sprintf("%.0f", v) }},
		{"disk used", func(s Sample) (float64, bool) { return float64(s.DiskUsed), true }, func(v float64) string { return HumanBytes(int64(v)) }},
		{"temperature", func(s Sample) (float64, bool) {
			if s.TemperatureC == nil {
				return 0, false
			}
			return *s.TemperatureC, true
		}, func(v float64) string { return fmt.Sprintf("%.1f °C", v) }},
	}
	var out []Graph
	for _, se := range series {
		var xs, ys []float64
		t0 := samples[0].At
		for _, s := range samples {
			if v, ok := se.val(s); ok {
				xs = append(xs, s.At.Sub(t0).Seconds())
				ys = append(ys, v)
			}
		}
		if len(ys) < 2 {
			continue
		}
		out = append(out, Graph{Title: se.title, Now: se.unit(ys[len(ys)-1]), SVG: spark(xs, ys, se.unit)})
	}
	return out
}

// spark is a 240×60 polyline with the range's ends labelled.
func spark(xs, ys []float64, unit func(float64) string) template.HTML {
	const w, h, pad = 240.0, 60.0, 4.0
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, y := range ys {
		lo, hi = math.Min(lo, y), math.Max(hi, y)
	}
	if hi == lo {
		hi = lo + 1
	}
	span := xs[len(xs)-1] - xs[0]
	if span <= 0 {
		span = 1
	}
	var pts strings.Builder
	for i := range ys {
		x := pad + (xs[i]-xs[0])/span*(w-2*pad)
		y := h - pad - (ys[i]-lo)/(hi-lo)*(h-2*pad)
		fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
	}
	svg := fmt.Sprintf(`<svg class="spark" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img"><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="%s"/><text x="2" y="10" font-size="9">%s</text><text x="2" y="%.0f" font-size="9">%s</text></svg>`,
		w, h, w, h, strings.TrimSpace(pts.String()), template.HTMLEscapeString(unit(hi)), h-2, template.HTMLEscapeString(unit(lo)))
	return template.HTML(svg)
}
