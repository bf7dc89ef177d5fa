// Package slot is the A/B contract shared by everything that boots or
// updates a card: the image builder (snodectl image build), the U-Boot boot
// script it compiles, snoded on the device (marking its slot good, noticing a
// rollback) and the update agent (writing the other slot and selecting it
// for a trial).
//
// The boot state lives in a small text file on the FAT boot partition,
// bootstate.txt, in U-Boot's `env export -t` format (NAME=VALUE lines). Both
// sides read and write it: the boot script decrements the chosen slot's
// attempts before booting it, snoded restores them once the node is healthy.
// A file rather than U-Boot's own environment because the two boards keep
// that environment in different places (qemu_arm64 in a flash device QEMU
// does not persist by default, rpi_arm64 in uboot.env on the FAT), because
// snoded then needs no U-Boot environment CRC code, and because the state
// travels with the card: a card moved to another board keeps its slots.
package slot

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Partition numbers on the card (MBR primary entries, 1-based as Linux and
// U-Boot count them).
const (
	PartBoot = 1
	PartA    = 2
	PartB    = 3
	PartData = 4
)

// File names.
const (
	StateFile    = "bootstate.txt" // on the boot partition
	ScriptFile   = "boot.scr"      // on the boot partition
	BootArgsFile = "bootargs.env"  // on the boot partition, optional: user_bootargs=…
	ManifestFile = "manifest.json" // in each slot
	EnvFile      = "slot.env"      // in each slot: slot_bootargs=…
	KernelFile   = "Image"
	InitrdFile   = "initramfs.cpio.gz"
	DTBDir       = "dtbs"
)

// Attempts. U-Boot's setexpr writes hexadecimal and its test -gt reads
// decimal, so both stay single digits.
const (
	// MaxAttempts is what a slot that reached healthy gets back: a
	// committed slot survives two bad boots (power cuts during boot) before
	// the other slot is tried.
	MaxAttempts = 3
	// TrialAttempts is what a newly written slot gets: one boot that is cut
	// short by power does not throw a good update away, two failed boots
	// end on the old slot.
	TrialAttempts = 2
)

// Slots are the slot names in partition order.
var Slots = []string{"A", "B"}

// Valid reports whether s is a slot name.
func Valid(s string) bool { return s == "A" || s == "B" }

// Other is the slot that is not s.
func Other(s string) string {
	if s == "A" {
		return "B"
	}
	return "A"
}

// Partition is the partition number of slot s.
func Partition(s string) int {
	if s == "B" {
		return PartB
	}
	return PartA
}

// Slot states as the status page reports the other slot.
const (
	StateGood   = "good"   // committed, kept as the fallback
	StateBad    = "bad"    // its attempts ran out (rolled back) or never booted
	StateTrying = "trying" // selected to boot next, not yet committed
	StateEmpty  = "empty"  // holds no system
)

// BootState is bootstate.txt.
type BootState struct {
	Order []string       // the slot tried first, then the other
	Left  map[string]int // attempts left per slot
}

// Default is what the boot script assumes when bootstate.txt is missing or
// unreadable: slot A with every attempt, slot B none (it may be empty).
func Default() BootState {
	return BootState{Order: []string{"A", "B"}, Left: map[string]int{"A": MaxAttempts, "B": 0}}
}

func leftKey(s string) string { return "BOOT_" + s + "_LEFT" }

// Fresh is the state a built card starts with: the same system in both
// slots, A first, each with every attempt.
func Fresh() BootState {
	return BootState{Order: []string{"A", "B"}, Left: map[string]int{"A": MaxAttempts, "B": MaxAttempts}}
}

// Parse reads bootstate.txt. U-Boot's export ends the text with a NUL and
// may order the lines differently; unknown names are ignored (a later
// version may add some), missing ones keep Default's values.
func Parse(data []byte) (BootState, error) {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		data = data[:i]
	}
	bs := Default()
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok {
			return bs, fmt.Errorf("%s line %d: %q is not NAME=VALUE", StateFile, n+1, line)
		}
		switch name {
		case "BOOT_ORDER":
			order := strings.Fields(val)
			if len(order) != 2 || !Valid(order[0]) || !Valid(order[1]) || order[0] == order[1] {
				return bs, fmt.Errorf("%s line %d: BOOT_ORDER %q, want \"A B\" or \"B A\"", StateFile, n+1, val)
			}
			bs.Order = order
		case leftKey("A"), leftKey("B"):
			v, err := strconv.Atoi(strings.TrimSpace(val))
			if err != nil || v < 0 || v > 9 {
				return bs, fmt.Errorf("%s line %d: %s %q, want 0..9", StateFile, n+1, name, val)
			}
			bs.Left[strings.TrimSuffix(strings.TrimPrefix(name, "BOOT_"), "_LEFT")] = v
		}
	}
	return bs, nil
}

// Marshal writes the state as U-Boot's `env export -t` does: sorted
// NAME=VALUE lines.
func (bs BootState) Marshal() []byte {
	lines := []string{
		"BOOT_ORDER=" + strings.Join(bs.Order, " "),
		leftKey("A") + "=" + strconv.Itoa(bs.Left["A"]),
		leftKey("B") + "=" + strconv.Itoa(bs.Left["B"]),
	}
	sort.Strings(lines)
	return []byte(strings.Join(lines, "\n") + "\n")
}

func (bs BootState) String() string {
	return fmt.Sprintf("order %s, attempts left A=%d B=%d", strings.Join(bs.Order, " "), bs.Left["A"], bs.Left["B"])
}

// Clone returns an independent copy.
func (bs BootState) Clone() BootState {
	c := BootState{Order: append([]string(nil), bs.Order...), Left: map[string]int{}}
	for k, v := range bs.Left {
		c.Left[k] = v
	}
	return c
}

// Next is what the boot script does with this state: the first slot in
// order with attempts left, whose count it decrements. With none left it
// boots the first slot without counting (a card never bricks itself), and
// counted is false.
func (bs BootState) Next() (slot string, after BootState, counted bool) {
	after = bs.Clone()
	for _, s := range bs.Order {
		if bs.Left[s] > 0 {
			after.Left[s]--
			return s, after, true
		}
	}
	return bs.Order[0], after, false
}

// First is the slot the boot script tries first.
func (bs BootState) First() string { return bs.Order[0] }

// Prefer puts s first in the order.
func (bs *BootState) Prefer(s string) { bs.Order = []string{s, Other(s)} }

// MarkGood gives the booted slot its attempts back: snoded calls it once
// the node is healthy.
func (bs *BootState) MarkGood(s string) { bs.Left[s] = MaxAttempts }

// MarkBad takes every attempt from s and puts the other slot first.
func (bs *BootState) MarkBad(s string) {
	bs.Left[s] = 0
	bs.Prefer(Other(s))
}

// SetTrial selects s, just written, for the next boot.
func (bs *BootState) SetTrial(s string) {
	bs.Left[s] = TrialAttempts
	bs.Prefer(s)
}

// State is how the running slot sees slot s (not the running one): empty
// when it holds no system, trying when the next boot tries it, bad when it
// has no attempts left, good otherwise.
func (bs BootState) State(s string, empty bool) string {
	switch {
	case empty:
		return StateEmpty
	case bs.Left[s] == 0:
		return StateBad
	case bs.First() == s:
		return StateTrying
	}
	return StateGood
}

// RolledBack reports whether booting running means the slot first in the
// order ran out of attempts (its kernel panicked, its init exited, it hung
// or never became healthy): the script only boots a slot other than the
// first when the first has none left.
func (bs BootState) RolledBack(running string) (from string, ok bool) {
	first := bs.First()
	if first != running && bs.Left[first] == 0 {
		return first, true
	}
	return "", false
}
