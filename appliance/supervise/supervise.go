// Package supervise keeps the node's services running: each service is a
// goroutine that is restarted with capped exponential backoff when it
// returns or panics, and a service that keeps failing is reported as a crash
// loop so health can mark the node unhealthy instead of hiding the churn.
package supervise

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"time"
)

// Service is a named long-running task. Run should block until ctx ends;
// returning earlier (with or without an error) counts as a failure.
type Service struct {
	Name string
	Run  func(ctx context.Context) error
}

// Policy is how failures are handled.
type Policy struct {
	InitialBackoff time.Duration // first restart delay
	MaxBackoff     time.Duration // cap of the doubling delay
	// StableAfter: a run at least this long resets the backoff and clears
	// a crash loop, so a service that recovered stops counting against health.
	StableAfter time.Duration
	// CrashLoopRestarts restarts within CrashLoopWindow mark a crash loop.
	CrashLoopRestarts int
	CrashLoopWindow   time.Duration
}

// DefaultPolicy: 0.5 s doubling to 30 s; 5 restarts within 60 s is a crash
// loop, which ends once the service has run for 60 s without failing.
var DefaultPolicy = Policy{
	InitialBackoff:    500 * time.Millisecond,
	MaxBackoff:        30 * time.Second,
	StableAfter:       60 * time.Second,
	CrashLoopRestarts: 5,
	CrashLoopWindow:   60 * time.Second,
}

// Clock is the time source, injectable so tests drive backoff without sleeping.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Phase of a supervised service.
const (
	StateStarting  = "starting"
	StateRunning   = "running"
	StateBackoff   = "backoff"
	StateCrashLoop = "crash-loop" // running or waiting, but failing too often
	StateStopped   = "stopped"
)

// State is one service's supervision record, as the status page shows it.
type State struct {
	Name      string
	State     string
	Restarts  int // total restarts since the supervisor started
	LastError string
	CrashLoop bool
	Since     time.Time // when the current state began
}

// Supervisor runs services under a Policy.
type Supervisor struct {
	policy Policy
	clock  Clock
	log    *slog.Logger

	mu     sync.Mutex
	states map[string]*record
	onFail func(name string, err error)
}

type record struct {
	State
	recent       []time.Time // restart times within the crash-loop window
	runningSince time.Time   // zero while not running
}

// New makes a Supervisor; nil clock means the wall clock.
func New(p Policy, clock Clock, log *slog.Logger) *Supervisor {
	if clock == nil {
		clock = realClock{}
	}
	if log == nil {
		log = slog.Default()
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = DefaultPolicy.InitialBackoff
	}
	if p.MaxBackoff < p.InitialBackoff {
		p.MaxBackoff = p.InitialBackoff
	}
	if p.CrashLoopRestarts <= 0 {
		p.CrashLoopRestarts = DefaultPolicy.CrashLoopRestarts
	}
	return &Supervisor{policy: p, clock: clock, log: log, states: map[string]*record{}}
}

// OnFailure registers a hook called (from the service's goroutine) each time
// a service fails, e.g. to log it to the status ring or flash the LED.
func (s *Supervisor) OnFailure(f func(name string, err error)) {
	s.mu.Lock()
	s.onFail = f
	s.mu.Unlock()
}

// Run starts every service and blocks until ctx ends and all have returned.
func (s *Supervisor) Run(ctx context.Context, services []Service) {
	var wg sync.WaitGroup
	for _, svc := range services {
		s.mu.Lock()
		if _, ok := s.states[svc.Name]; !ok {
			s.states[svc.Name] = &record{State: State{Name: svc.Name}}
		}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.keep(ctx, svc)
		}()
	}
	wg.Wait()
}

func (s *Supervisor) keep(ctx context.Context, svc Service) {
	backoff := s.policy.InitialBackoff
	for {
		s.set(svc.Name, StateRunning, "")
		start := s.clock.Now()
		err := guarded(ctx, svc)
		if ctx.Err() != nil {
			s.set(svc.Name, StateStopped, "")
			return
		}
		if err == nil {
			err = fmt.Errorf("service %s returned before shutdown", svc.Name)
		}
		ran := s.clock.Now().Sub(start)
		if s.policy.StableAfter > 0 && ran >= s.policy.StableAfter {
			backoff = s.policy.InitialBackoff
		}
		loop := s.failed(svc.Name, err, ran)
		s.log.Error("service failed; restarting", "svc", svc.Name, "err", err, "ran", ran.Round(time.Millisecond), "backoff", backoff, "crash_loop", loop)
		s.mu.Lock()
		hook := s.onFail
		s.mu.Unlock()
		if hook != nil {
			hook(svc.Name, err)
		}
		select {
		case <-ctx.Done():
			s.set(svc.Name, StateStopped, "")
			return
		case <-s.clock.After(backoff):
		}
		backoff = min(backoff*2, s.policy.MaxBackoff)
	}
}

// guarded runs a service, turning a panic into an error with its stack so a
// bug in one service never takes PID 1 down.
func guarded(ctx context.Context, svc Service) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Service: svc.Name, Value: r, Stack: string(debug.Stack())}
		}
	}()
	return svc.Run(ctx)
}

// PanicError is a recovered service panic.
type PanicError struct {
	Service string
	Value   any
	Stack   string
}

func (p *PanicError) Error() string { return fmt.Sprintf("panic in %s: %v", p.Service, p.Value) }

func (s *Supervisor) set(name, state, lastErr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.states[name]
	if state == StateRunning {
		r.runningSince = s.clock.Now()
	} else {
		r.runningSince = time.Time{}
	}
	if r.CrashLoop && state != StateStopped {
		state = StateCrashLoop
	}
	if r.State.State != state {
		r.Since = s.clock.Now()
	}
	r.State.State = state
	if lastErr != "" {
		r.LastError = lastErr
	}
}

// failed records a failure and reports whether the service is crash looping.
func (s *Supervisor) failed(name string, err error, ran time.Duration) bool {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.states[name]
	r.runningSince = time.Time{}
	r.Restarts++
	r.LastError = err.Error()
	if r.CrashLoop && s.policy.StableAfter > 0 && ran >= s.policy.StableAfter {
		r.CrashLoop = false
		r.recent = nil
	}
	keep := r.recent[:0]
	for _, t := range r.recent {
		if now.Sub(t) < s.policy.CrashLoopWindow {
			keep = append(keep, t)
		}
	}
	r.recent = append(keep, now)
	if len(r.recent) >= s.policy.CrashLoopRestarts {
		r.CrashLoop = true
	}
	state := StateBackoff
	if r.CrashLoop {
		state = StateCrashLoop
	}
	if r.State.State != state {
		r.Since = now
	}
	r.State.State = state
	return r.CrashLoop
}

// States returns every service's record, sorted by name.
func (s *Supervisor) States() []State {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]State, 0, len(s.states))
	for _, r := range s.states {
		// A crash loop ends once the service has stayed up for StableAfter.
		if r.CrashLoop && !r.runningSince.IsZero() && s.policy.StableAfter > 0 && now.Sub(r.runningSince) >= s.policy.StableAfter {
			r.CrashLoop = false
			r.recent = nil
			r.State.State = StateRunning
			r.Since = now
		}
		out = append(out, r.State)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// CrashLooping names the services currently in a crash loop.
func (s *Supervisor) CrashLooping() []string {
	var out []string
	for _, st := range s.States() {
		if st.CrashLoop {
			out = append(out, st.Name)
		}
	}
	return out
}
