package logring

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestRingKeepsLastLinesInOrder(t *testing.T) {
	r := New(3)
	if got := r.Lines(); len(got) != 0 {
		t.Fatalf("empty ring has %q", got)
	}
	r.Add("a")
	r.Add("b\n")
	if got := r.Lines(); strings.Join(got, ",") != "a,b" {
		t.Fatalf("lines %q", got)
	}
	for _, l := range []string{"c", "d", "e"} {
		r.Add(l)
	}
	if got := r.Lines(); strings.Join(got, ",") != "c,d,e" {
		t.Fatalf("after wrap %q, want c,d,e", got)
	}
	if r.Total() != 5 {
		t.Fatalf("total %d", r.Total())
	}
	// Lines is a copy: the caller may keep it while logging goes on.
	got := r.Lines()
	r.Add("f")
	if strings.Join(got, ",") != "c,d,e" {
		t.Fatalf("Lines aliased the ring: %q", got)
	}
}

func TestRingBoundsLineLength(t *testing.T) {
	r := New(2)
	r.Add(strings.Repeat("é", MaxLineBytes)) // 2 bytes each: must not split a rune
	l := r.Lines()[0]
	if len(l) > MaxLineBytes || !strings.HasSuffix(l, "…") {
		t.Fatalf("long line kept %d bytes, suffix %q", len(l), l[len(l)-3:])
	}
	if !strings.HasPrefix(l, "éé") || strings.ContainsRune(l, '\uFFFD') {
		t.Fatal("long line cut inside a UTF-8 sequence")
	}
}

func TestHandlerTeesIntoRingAndNext(t *testing.T) {
	r := New(10)
	var next bytes.Buffer
	log := slog.New(r.Handler(slog.NewTextHandler(&next, &slog.HandlerOptions{Level: slog.LevelDebug})))
	log.Debug("debug detail")
	log.With("svc", "rpc").WithGroup("req").Info("stored", "hash", "abc")
	log.Warn("disk", "free", 12)

	lines := r.Lines()
	if len(lines) != 2 {
		t.Fatalf("ring %q, want the info and warn lines only", lines)
	}
	if !strings.Contains(lines[0], "level=INFO") || !strings.Contains(lines[0], "msg=stored") ||
		!strings.Contains(lines[0], "svc=rpc") || !strings.Contains(lines[0], "req.hash=abc") {
		t.Fatalf("info line %q", lines[0])
	}
	if !strings.Contains(lines[1], "level=WARN") || !strings.Contains(lines[1], "free=12") {
		t.Fatalf("warn line %q", lines[1])
	}
	if out := next.String(); !strings.Contains(out, "debug detail") || !strings.Contains(out, "req.hash=abc") {
		t.Fatalf("next handler got %q", out)
	}
}

func TestHandlerWithoutNext(t *testing.T) {
	r := New(4)
	log := slog.New(r.Handler(nil))
	log.Info("only the ring")
	if l := r.Lines(); len(l) != 1 || !strings.Contains(l[0], `msg="only the ring"`) {
		t.Fatalf("lines %q", l)
	}
}

func TestRingConcurrent(t *testing.T) {
	r := New(64)
	log := slog.New(r.Handler(nil))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				log.Info("line", "g", g, "i", i)
				if i%50 == 0 {
					r.Lines()
				}
			}
		}()
	}
	wg.Wait()
	if r.Total() != 1600 || len(r.Lines()) != 64 {
		t.Fatalf("total %d, kept %d", r.Total(), len(r.Lines()))
	}
	for _, l := range r.Lines() {
		if !strings.HasPrefix(l, "time=") || !strings.Contains(l, "msg=line") {
			t.Fatalf("torn line %q", l)
		}
	}
}

func BenchmarkRingHandler(b *testing.B) {
	r := New(1000)
	log := slog.New(r.Handler(nil))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		log.Info("stored message", "svc", "rpc", "n", i)
	}
	b.ReportMetric(float64(len(r.Lines())), "lines_kept")
}

func ExampleRing() {
	r := New(2)
	for i := range 3 {
		r.Add(fmt.Sprint("line ", i))
	}
	fmt.Println(r.Lines())
	// Output: [line 1 line 2]
}
