// Package benchfig prints a benchmark's figure next to the target it
// approaches, as one line that `make bench` gathers into a table: the
// targets live beside the code that measures them, and a run shows at a
// glance which are met. Benchmarks only: no test asserts on these.
package benchfig

import (
	"fmt"
	"strings"
	"testing"
)

// Marker starts every figure line; the Makefile greps for it.
const Marker = "FIGURE"

// AtLeast reports value against a floor: throughput and the like.
func AtLeast(b testing.TB, what string, value, target float64, unit string) {
	b.Helper()
	report(b, what, value, target, unit, "≥", value/target, value >= target)
}

// AtMost reports value against a ceiling: memory, latency.
func AtMost(b testing.TB, what string, value, target float64, unit string) {
	b.Helper()
	report(b, what, value, target, unit, "≤", value/target, value <= target)
}

func report(b testing.TB, what string, value, target float64, unit, op string, ratio float64, met bool) {
	b.Helper()
	verdict := "met"
	if !met {
		verdict = "SHORT"
	}
	b.Logf("%s | %s | %s %s | target %s %s | %.2fx | %s", Marker, what, Num(value), unit, op, Num(target), ratio, verdict)
}

// Num formats a figure the way people read them: thousands separated,
// one decimal below 100.
func Num(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	s := fmt.Sprintf("%.0f", v)
	var out strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out.WriteByte(',')
		}
		out.WriteRune(c)
	}
	return out.String()
}
