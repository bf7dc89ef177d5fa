package board

import "time"

// Gesture timings (DESIGN §4).
const (
	ShortPressMax      = 2 * time.Second  // shorter is a status press
	RebootHold         = 5 * time.Second  // hold at least this long to reboot
	FactoryResetHold   = 15 * time.Second // hold at least this long to arm a factory reset
	FactoryResetWindow = 10 * time.Second // confirming press must start this soon after release
	DefaultDebounce    = 30 * time.Millisecond
)

// Gestures decodes press/release edges of the one button into Actions. It is
// pure logic: time comes from Clock so tests drive it by hand.
//
//	hold < 2 s                      → ActionStatus
//	2 s ≤ hold < 5 s                → nothing (too long for status, too short for reboot)
//	5 s ≤ hold < 15 s               → ActionReboot on release
//	hold ≥ 15 s                     → arms a factory reset, no action yet
//	armed, short press begun ≤ 10 s after that release → ActionFactoryReset
//	armed, anything else            → disarmed; the press counts on its own
//
// Edges closer than Debounce to the last accepted edge are contact bounce and
// are dropped, as are repeated edges in the same direction.
type Gestures struct {
	Clock    func() time.Time
	Debounce time.Duration

	down       bool
	downAt     time.Time
	lastEdge   time.Time
	haveEdge   bool
	armed      bool
	armedUntil time.Time
}

// NewGestures returns a decoder on the wall clock with the default debounce.
func NewGestures() *Gestures { return &Gestures{Clock: time.Now, Debounce: DefaultDebounce} }

func (g *Gestures) now() time.Time {
	if g.Clock == nil {
		return time.Now()
	}
	return g.Clock()
}

func (g *Gestures) bounce(now time.Time) bool {
	if g.haveEdge && g.Debounce > 0 && now.Sub(g.lastEdge) < g.Debounce {
		return true
	}
	g.lastEdge, g.haveEdge = now, true
	return false
}

// Press records the button going down.
func (g *Gestures) Press() {
	now := g.now()
	if g.down || g.bounce(now) {
		return
	}
	g.down, g.downAt = true, now
	if g.armed && now.After(g.armedUntil) {
		g.armed = false // confirmation came too late: a plain press again
	}
}

// Release records the button coming up and returns the gesture it completed.
func (g *Gestures) Release() (Action, bool) {
	now := g.now()
	if !g.down || g.bounce(now) {
		return 0, false
	}
	g.down = false
	hold := now.Sub(g.downAt)
	if g.armed {
		g.armed = false
		if hold < ShortPressMax {
			return ActionFactoryReset, true
		}
	}
	switch {
	case hold < ShortPressMax:
		return ActionStatus, true
	case hold < RebootHold:
		return 0, false
	case hold < FactoryResetHold:
		return ActionReboot, true
	default:
		g.armed, g.armedUntil = true, now.Add(FactoryResetWindow)
		return 0, false
	}
}

// Armed reports whether a factory reset waits for its confirming press.
func (g *Gestures) Armed() bool { return g.armed && !g.now().After(g.armedUntil) }

// Held is how long the button has been down (0 when up), for feedback.
func (g *Gestures) Held() time.Duration {
	if !g.down {
		return 0
	}
	return g.now().Sub(g.downAt)
}
