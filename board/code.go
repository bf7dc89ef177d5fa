package board

import (
	"fmt"
	"time"
)

// CodeBlinker is implemented by boards that can blink a number once (the
// short press "blink a status code", DESIGN §4); PID 1 type-asserts for it.
type CodeBlinker interface {
	BlinkCode(n int) error
}

// Code blink timing: n slow blinks, readable by counting aloud.
const (
	codeOn    = 400 * time.Millisecond
	codeOff   = 400 * time.Millisecond
	codeLead  = 1200 * time.Millisecond // dark before the count, so it stands apart
	MaxCode   = 9
	codeAfter = 800 * time.Millisecond // dark after, before the state returns
)

// CodePattern is n blinks framed by darkness, shown once.
func CodePattern(n int) (Pattern, time.Duration, error) {
	if n < 1 || n > MaxCode {
		return Pattern{}, 0, fmt.Errorf("status code %d: want 1–%d", n, MaxCode)
	}
	steps := []Step{{false, codeLead}}
	total := codeLead
	for i := range n {
		off := codeOff
		if i == n-1 {
			off = codeAfter
		}
		steps = append(steps, Step{true, codeOn}, Step{false, off})
		total += codeOn + off
	}
	return Pattern{Steps: steps}, total, nil
}

// BlinkCode blinks n once on the LED, then returns to the health state.
// The console (and so QEMU) gets "snodebox: led code N".
func (h *Hardware) BlinkCode(n int) error {
	p, d, err := CodePattern(n)
	if err != nil {
		return err
	}
	h.mu.Lock()
	if h.cfg.Console != nil {
		fmt.Fprintf(h.cfg.Console, "snodebox: led code %d\n", n)
	}
	h.mu.Unlock()
	h.showOverlay(&p)
	time.AfterFunc(d, func() { h.clearOverlay(&p) })
	return nil
}

// clearOverlay drops the overlay p if it is still the one shown (a button
// hold that started meanwhile keeps its hint).
func (h *Hardware) clearOverlay(p *Pattern) {
	h.mu.Lock()
	still := h.overlay == p
	h.mu.Unlock()
	if still {
		h.showOverlay(nil)
	}
}

// BlinkCode on the simulated board records the code.
func (s *Sim) BlinkCode(n int) error {
	if _, _, err := CodePattern(n); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes = append(s.codes, n)
	if len(s.codes) > simHistory {
		s.codes = s.codes[1:]
	}
	return nil
}

// Codes lists the status codes blinked, oldest first.
func (s *Sim) Codes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.codes...)
}

var (
	_ CodeBlinker = (*Hardware)(nil)
	_ CodeBlinker = (*Sim)(nil)
)
