package board

import (
	"sync"
	"time"
)

// While the button is held the LED tells the user what letting go will do,
// since nobody counts fifteen seconds right:
//
//	held ≥ 5 s   rapid blink: release now to reboot
//	held ≥ 15 s  dark: release, then press again within 10 s to erase the data
//
// The LED goes back to the health state on release (or when the 10 s
// confirmation window closes).
var (
	holdRebootPattern = Pattern{On: 50 * time.Millisecond, Off: 50 * time.Millisecond}
	holdResetPattern  = Pattern{} // dark
)

// feedback drives the LED overlay from button edges; timers come from after
// so tests fire them by hand.
type feedback struct {
	after func(time.Duration, func()) (stop func() bool)
	show  func(p *Pattern) // nil: back to the health state

	mu     sync.Mutex
	gen    int
	stops  []func() bool
	active bool
}

func newFeedback(show func(*Pattern)) *feedback {
	return &feedback{show: show, after: func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }}
}

func (f *feedback) cancelLocked() {
	f.gen++
	for _, s := range f.stops {
		s()
	}
	f.stops = f.stops[:0]
}

// fire runs a timer's change unless a later edge made it stale.
func (f *feedback) fire(gen int, p *Pattern) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if gen != f.gen {
		return
	}
	f.setLocked(p)
}

func (f *feedback) setLocked(p *Pattern) {
	if p == nil && !f.active {
		return // nothing shown: leave the health state alone
	}
	f.active = p != nil
	f.show(p)
}

func (f *feedback) pressed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelLocked()
	g := f.gen
	f.stops = append(f.stops,
		f.after(RebootHold, func() { f.fire(g, &holdRebootPattern) }),
		f.after(FactoryResetHold, func() { f.fire(g, &holdResetPattern) }))
}

func (f *feedback) released(armed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelLocked()
	if !armed {
		f.setLocked(nil)
		return
	}
	g := f.gen
	f.setLocked(&holdResetPattern)
	f.stops = append(f.stops, f.after(FactoryResetWindow, func() { f.fire(g, nil) }))
}

func (f *feedback) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelLocked()
}
