package supervise

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock hands every backoff request to the test, which decides when the
// wait ends; nothing in these tests sleeps.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps chan sleep
}

type sleep struct {
	d    time.Duration
	fire chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), sleeps: make(chan sleep, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.sleeps <- sleep{d: d, fire: ch}
	return ch
}

// next waits for the supervisor's next backoff, lets that much fake time
// pass and ends the wait.
func (c *fakeClock) next(t *testing.T) time.Duration {
	t.Helper()
	s := <-c.sleeps
	c.Advance(s.d)
	s.fire <- c.Now()
	return s.d
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestRestartWithCappedExponentialBackoff(t *testing.T) {
	clk := newFakeClock()
	p := Policy{InitialBackoff: time.Second, MaxBackoff: 8 * time.Second, StableAfter: time.Hour, CrashLoopRestarts: 100, CrashLoopWindow: time.Minute}
	s := New(p, clk, quiet())
	runs := make(chan int, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	calls := 0
	go func() {
		s.Run(ctx, []Service{{Name: "flaky", Run: func(ctx context.Context) error {
			calls++
			runs <- calls
			if calls > len(want) {
				<-ctx.Done() // finally stays up
				return nil
			}
			return errors.New("boom")
		}}})
		close(done)
	}()
	for i, w := range want {
		<-runs
		if got := clk.next(t); got != w*time.Second {
			t.Fatalf("restart %d: backoff %v, want %v", i+1, got, w*time.Second)
		}
	}
	<-runs
	st := s.States()[0]
	if st.Restarts != len(want) || st.LastError != "boom" || st.State != StateRunning {
		t.Fatalf("state %+v: want running after %d restarts, last error boom", st, len(want))
	}
	cancel()
	<-done
	if got := s.States()[0].State; got != StateStopped {
		t.Fatalf("after shutdown state %q, want %q", got, StateStopped)
	}
}

func TestLongRunResetsBackoff(t *testing.T) {
	clk := newFakeClock()
	p := Policy{InitialBackoff: time.Second, MaxBackoff: time.Minute, StableAfter: time.Minute, CrashLoopRestarts: 100, CrashLoopWindow: time.Minute}
	s := New(p, clk, quiet())
	n := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, []Service{{Name: "svc", Run: func(ctx context.Context) error {
		n++
		if n == 3 {
			clk.Advance(2 * time.Minute) // this run was long and healthy
		}
		return errors.New("fail")
	}}})
	got := []time.Duration{clk.next(t), clk.next(t), clk.next(t), clk.next(t)}
	want := []time.Duration{time.Second, 2 * time.Second, time.Second, 2 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("backoffs %v, want %v (reset after the long run)", got, want)
		}
	}
}

func TestCrashLoopMarksAndClears(t *testing.T) {
	clk := newFakeClock()
	p := Policy{InitialBackoff: time.Second, MaxBackoff: 4 * time.Second, StableAfter: time.Minute, CrashLoopRestarts: 5, CrashLoopWindow: time.Minute}
	s := New(p, clk, quiet())
	fail := make(chan bool, 10)
	started := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, []Service{
		{Name: "bad", Run: func(ctx context.Context) error {
			started <- struct{}{}
			if <-fail {
				return errors.New("crash")
			}
			<-ctx.Done()
			return nil
		}},
	})
	for i := 1; i <= 5; i++ {
		<-started
		if loops := s.CrashLooping(); len(loops) != 0 {
			t.Fatalf("crash loop reported after %d restarts: %v", i-1, loops)
		}
		fail <- true
		clk.next(t)
	}
	<-started
	if loops := s.CrashLooping(); len(loops) != 1 || loops[0] != "bad" {
		t.Fatalf("after 5 restarts within a minute CrashLooping = %v, want [bad]", loops)
	}
	if st := s.States()[0]; st.State != StateCrashLoop {
		t.Fatalf("state %q, want %q", st.State, StateCrashLoop)
	}
	fail <- false // the service now stays up
	clk.Advance(2 * time.Minute)
	if loops := s.CrashLooping(); len(loops) != 0 {
		t.Fatalf("still crash looping after a stable run: %v", loops)
	}
}

func TestSlowFailuresAreNotACrashLoop(t *testing.T) {
	clk := newFakeClock()
	p := Policy{InitialBackoff: time.Second, MaxBackoff: time.Second, StableAfter: time.Hour, CrashLoopRestarts: 5, CrashLoopWindow: time.Minute}
	s := New(p, clk, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, []Service{{Name: "slow", Run: func(ctx context.Context) error {
		clk.Advance(20 * time.Second) // fails every ~21 s: 3 per minute
		return errors.New("fail")
	}}})
	for range 10 {
		clk.next(t)
		if loops := s.CrashLooping(); len(loops) != 0 {
			t.Fatalf("failures 21 s apart flagged as crash loop: %v", loops)
		}
	}
}

func TestPanicIsRecovered(t *testing.T) {
	clk := newFakeClock()
	s := New(DefaultPolicy, clk, quiet())
	var failures []error
	var mu sync.Mutex
	s.OnFailure(func(name string, err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	go s.Run(ctx, []Service{{Name: "panicky", Run: func(ctx context.Context) error {
		calls++
		if calls == 1 {
			var m map[string]int
			m["x"] = 1 // nil map write: a real runtime panic
		}
		<-ctx.Done()
		return nil
	}}})
	clk.next(t)
	mu.Lock()
	defer mu.Unlock()
	var pe *PanicError
	if len(failures) != 1 || !errors.As(failures[0], &pe) {
		t.Fatalf("failures %v, want one PanicError", failures)
	}
	if pe.Service != "panicky" || !strings.Contains(pe.Stack, "supervise_test.go") {
		t.Fatalf("panic error %q lacks service name or stack", pe.Error())
	}
}

func TestReturnWithoutErrorIsAFailure(t *testing.T) {
	clk := newFakeClock()
	s := New(DefaultPolicy, clk, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, []Service{{Name: "quitter", Run: func(ctx context.Context) error { return nil }}})
	clk.next(t)
	if st := s.States()[0]; st.Restarts != 1 || !strings.Contains(st.LastError, "returned before shutdown") {
		t.Fatalf("state %+v: an early clean return must count as a failure", st)
	}
}
