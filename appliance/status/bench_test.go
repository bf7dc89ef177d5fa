package status

import (
	"io"
	"net/http/httptest"
	"testing"
)

// renderBudget is what one render may cost: the page refreshes every 10 s
// and must stay a rounding error on a Pi 3 that is busy relaying.
const renderBudget = 5e6 // ns

func benchmarkPath(b *testing.B, path string) {
	r := sampleReport()
	for range 200 { // a full log ring and a large swarm view
		r.Logs = append(r.Logs, `time=2026-01-01T00:00:00Z level=INFO msg="stored message" svc=rpc ns=0 ttl=1209600000`)
	}
	h := Handler(SourceFunc(func() Report { return r }), nil)
	req := httptest.NewRequest("GET", path, nil)
	b.ReportAllocs()
	var size int
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		size = rec.Body.Len()
		io.Discard.Write(rec.Body.Bytes())
	}
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(float64(size), "bytes/page")
	b.ReportMetric(ns/renderBudget, "x_of_5ms_budget")
}

func BenchmarkPageHTML(b *testing.B)   { benchmarkPath(b, "/") }
func BenchmarkStatusJSON(b *testing.B) { benchmarkPath(b, "/status.json") }
func BenchmarkMetrics(b *testing.B)    { benchmarkPath(b, "/metrics") }
