package board

import (
	"sync"
	"time"
)

// LEDChange is one entry of the simulated LED's history.
type LEDChange struct {
	State LEDState  `json:"state"`
	At    time.Time `json:"at"`
}

// Sim is a simulated board: the LED lives in memory with a bounded history,
// the button is driven by Press and PowerKey (the status page's API in hosted
// mode). Package board/sim exposes it as sim.Board.
type Sim struct {
	mu       sync.Mutex
	led      LEDState
	history  []LEDChange
	traffic  int64
	actions  chan Action
	gestures *Gestures
	offset   time.Duration // virtual time added by simulated holds
	codes    []int
	closed   bool
}

const simHistory = 64

// NewSim returns a simulated board showing LEDBooting.
func NewSim() *Sim {
	s := &Sim{actions: make(chan Action, 16)}
	s.gestures = &Gestures{Clock: s.now}
	s.history = append(s.history, LEDChange{State: LEDBooting, At: time.Now()})
	return s
}

// now is wall time plus every simulated hold so far: Press(15*time.Second)
// returns at once, yet the gesture decoder sees the full hold, and a second
// Press a few real seconds later lands inside the confirmation window.
func (s *Sim) now() time.Time { return time.Now().Add(s.offset) }

func (s *Sim) Info() Info { return Info{Name: "sim", Model: "simulated board"} }

func (s *Sim) SetLED(st LEDState) error {
	if !st.Valid() {
		return errInvalidLED(st)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == s.led {
		return nil
	}
	s.led = st
	s.history = append(s.history, LEDChange{State: st, At: time.Now()})
	if len(s.history) > simHistory {
		s.history = append(s.history[:0], s.history[len(s.history)-simHistory:]...)
	}
	return nil
}

func (s *Sim) LED() LEDState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.led
}

// History is the LED's recent changes, oldest first.
func (s *Sim) History() []LEDChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]LEDChange(nil), s.history...)
}

func (s *Sim) Traffic() {
	s.mu.Lock()
	if s.led == LEDHealthy {
		s.traffic++
	}
	s.mu.Unlock()
}

// Flickers counts traffic flickers shown while healthy.
func (s *Sim) Flickers() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.traffic
}

func (s *Sim) Actions() <-chan Action { return s.actions }

// Press simulates pressing the button for hold and returns the action it
// produced, if any (the action is also delivered on Actions).
func (s *Sim) Press(hold time.Duration) (Action, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false
	}
	s.gestures.Press()
	s.offset += max(hold, 0)
	a, ok := s.gestures.Release()
	// Keep the debouncer from swallowing a quick follow-up press.
	s.offset += s.gestures.Debounce
	if ok {
		s.deliver(a)
	}
	return a, ok
}

// FactoryResetArmed reports whether a long hold waits for its confirming press.
func (s *Sim) FactoryResetArmed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gestures.Armed()
}

// PowerKey simulates the power key.
func (s *Sim) PowerKey() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.deliver(ActionPowerOff)
	}
}

func (s *Sim) deliver(a Action) {
	select {
	case s.actions <- a:
	default: // nobody is reading; a button is not a queue
	}
}

func (s *Sim) OpenWatchdog() (Watchdog, error) { return nil, ErrNoWatchdog }

func (s *Sim) Temperature() (float64, bool) { return 0, false }

func (s *Sim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
