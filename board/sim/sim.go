// Package sim is the simulated board of hosted mode (`snoded run`) and tests:
// the LED lives in memory, the button is pressed through Press and PowerKey,
// which the status page exposes as POST /api/button.
package sim

import "github.com/snodebox/snodebox/board"

// Board is the simulated board (the implementation lives in package board so
// that board.Detect can fall back to it).
type Board = board.Sim

// LEDChange is one entry of the LED history.
type LEDChange = board.LEDChange

// New returns a simulated board showing "booting".
func New() *Board { return board.NewSim() }

var _ board.Board = (*Board)(nil)
