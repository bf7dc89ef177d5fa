// Package slots is snoded's side of the A/B scheme (image/slot): at boot it
// reads the boot state U-Boot left, notices a rollback and records why;
// once the node is healthy it marks its slot good (its attempts restored),
// and a slot on trial that is not healthy within the health window reboots
// unmarked, so the boot script falls back to the other slot.
package slots

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/snodebox/snodebox/image/slot"
)

// BootFS is the boot partition's state file.
type BootFS interface {
	ReadState() ([]byte, error)
	WriteState([]byte) error
}

// SlotReader reads what a slot holds; an empty slot is an error.
type SlotReader interface {
	Manifest(s string) (slot.Manifest, error)
}

// Switch is a change of the running slot.
type Switch struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Failure is what a slot on trial writes before it gives up, so the slot
// that boots after it can say why.
type Failure struct {
	Slot    string    `json:"slot"`
	Version string    `json:"version"`
	BuildID string    `json:"build_id"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// Record is the agent's memory on the data partition (system/slots.json):
// the boot partition holds only what U-Boot needs.
type Record struct {
	LastBooted string            `json:"last_booted"`
	Committed  map[string]string `json:"committed"` // slot → build id marked good
	LastSwitch *Switch           `json:"last_switch,omitempty"`
	// RollbackAcked: the user pressed the button (or a later update
	// committed) since the last rollback; the LED stops saying degraded.
	RollbackAcked bool     `json:"rollback_acked"`
	Rollback      bool     `json:"rollback"` // the last switch was a rollback
	TrialFailure  *Failure `json:"trial_failure,omitempty"`
}

// RecordFile is the record's path under the data directory.
const RecordFile = "system/slots.json"

// Other is the status of the slot not running.
type Other struct {
	Version string `json:"version"`
	State   string `json:"state"` // good, bad, trying, empty
}

// Status is /status.json's "update" object (the update agent fills the
// rest).
type Status struct {
	BootedSlot string  `json:"booted_slot"`
	Version    string  `json:"version"`
	BuildID    string  `json:"build_id,omitempty"`
	Committed  bool    `json:"committed"` // the running slot is marked good
	OtherSlot  Other   `json:"other_slot"`
	LastSwitch *Switch `json:"last_switch"`
	// Rollback is the unacknowledged rollback's reason ("" when none).
	Rollback     string `json:"rollback,omitempty"`
	HealthWindow string `json:"health_window"`
	BootState    string `json:"boot_state"`
}

// Agent runs the booted slot's side.
type Agent struct {
	Booted     string // snode.slot
	Boot       BootFS
	Slots      SlotReader
	DataDir    string
	Window     time.Duration
	Healthy    func() (bool, []string)
	Reboot     func(reason string)
	Log        *slog.Logger
	Now        func() time.Time
	PollPeriod time.Duration

	mu       sync.Mutex
	bs       slot.BootState
	rec      Record
	self     slot.Manifest
	other    slot.Manifest
	otherOK  bool
	trial    bool
	started  bool
	stateErr string
}

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Agent) recordPath() string { return filepath.Join(a.DataDir, RecordFile) }

func (a *Agent) loadRecord() Record {
	var r Record
	data, err := os.ReadFile(a.recordPath())
	if err == nil {
		if err := json.Unmarshal(data, &r); err != nil {
			a.Log.Warn("slot record unreadable; starting a new one", "err", err)
			r = Record{}
		}
	}
	if r.Committed == nil {
		r.Committed = map[string]string{}
	}
	return r
}

func (a *Agent) saveRecord() error {
	data, _ := json.MarshalIndent(a.rec, "", "  ")
	p := a.recordPath()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(p)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func (a *Agent) writeState() error {
	if err := a.Boot.WriteState(a.bs.Marshal()); err != nil {
		return fmt.Errorf("write boot state: %w", err)
	}
	return nil
}

// Start reads the boot state and both slots and records what this boot
// means: a rollback (the slot first in order ran out of attempts), a switch
// to a newly selected slot, or an ordinary boot.
func (a *Agent) Start() error {
	if a.Log == nil {
		a.Log = slog.New(slog.DiscardHandler)
	}
	if !slot.Valid(a.Booted) {
		return fmt.Errorf("booted slot %q unknown (no snode.slot= from the boot script)", a.Booted)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.started = true
	data, err := a.Boot.ReadState()
	if err != nil {
		a.stateErr = err.Error()
		a.bs = slot.Default()
	} else if a.bs, err = slot.Parse(data); err != nil {
		a.stateErr = err.Error()
	}
	if a.stateErr != "" {
		a.Log.Warn("boot state unreadable; the boot script uses its defaults", "err", a.stateErr)
	}
	if a.self, err = a.Slots.Manifest(a.Booted); err != nil {
		a.Log.Warn("own slot manifest", "slot", a.Booted, "err", err)
	}
	other := slot.Other(a.Booted)
	a.other, err = a.Slots.Manifest(other)
	a.otherOK = err == nil
	a.rec = a.loadRecord()
	now := a.now()
	changed := false
	if from, ok := a.bs.RolledBack(a.Booted); ok {
		reason := fmt.Sprintf("slot %s did not start: its attempts ran out (kernel panic, init exit or hang)", from)
		if a.otherOK && from == other {
			reason = fmt.Sprintf("slot %s (version %s) did not start: its attempts ran out (kernel panic, init exit or hang)", from, a.other.Version)
		}
		if f := a.rec.TrialFailure; f != nil && f.Slot == from {
			reason = fmt.Sprintf("slot %s (version %s) %s", from, f.Version, f.Reason)
		}
		a.rec.LastSwitch = &Switch{From: from, To: a.Booted, Reason: reason, At: now}
		a.rec.Rollback, a.rec.RollbackAcked = true, false
		a.rec.TrialFailure = nil
		a.bs.MarkBad(from)
		a.Log.Warn("rolled back", "from", from, "to", a.Booted, "reason", reason)
		if err := a.writeState(); err != nil {
			a.Log.Error("mark the failed slot bad", "err", err)
		}
		changed = true
	} else if a.rec.LastBooted != "" && a.rec.LastBooted != a.Booted {
		a.rec.LastSwitch = &Switch{From: a.rec.LastBooted, To: a.Booted, Reason: fmt.Sprintf("slot %s (version %s) selected for trial", a.Booted, a.self.Version), At: now}
		a.rec.Rollback = false
		changed = true
	}
	if a.rec.LastBooted != a.Booted {
		a.rec.LastBooted = a.Booted
		changed = true
	}
	// A slot is on trial when it was never healthy on this card and the
	// other slot holds a system that was: only then is there something
	// better to fall back to. A fresh card's slots were never healthy, so
	// a node that waits for its network cable is not rebooted every health
	// window.
	a.trial = !a.committed(a.self.BuildID) && a.otherOK && a.committed(a.other.BuildID) && a.bs.Left[other] > 0
	committed := a.committed(a.self.BuildID)
	if changed {
		if err := a.saveRecord(); err != nil {
			a.Log.Error("save slot record", "err", err)
		}
	}
	a.Log.Info("slot", "booted", a.Booted, "version", a.self.Version, "state", a.bs.String(), "trial", a.trial, "committed", committed)
	return nil
}

// Run waits for the node to be healthy, then marks the slot good; a slot on
// trial that is not healthy within the window reboots unmarked.
func (a *Agent) Run(ctx context.Context) error {
	period := a.PollPeriod
	if period == 0 {
		period = 2 * time.Second
	}
	deadline := a.now().Add(a.Window)
	t := time.NewTicker(period)
	defer t.Stop()
	warned := false
	for {
		ok, reasons := a.Healthy()
		if ok {
			return a.commit()
		}
		if a.now().After(deadline) {
			a.mu.Lock()
			trial := a.trial
			a.mu.Unlock()
			why := fmt.Sprintf("was not healthy within %s: %s", a.Window, strings.Join(reasons, "; "))
			if !trial {
				if !warned {
					a.Log.Warn("not healthy within the health window; nothing to fall back to, staying", "window", a.Window, "reasons", reasons)
					warned = true
				}
			} else {
				a.giveUp(why)
				// The reboot is under way; wait for shutdown.
				<-ctx.Done()
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// committed: a slot with this build id was healthy on this card (the
// same system in the other slot counts: it is the same files).
func (a *Agent) committed(id string) bool {
	if id == "" {
		return false
	}
	for _, c := range a.rec.Committed {
		if c == id {
			return true
		}
	}
	return false
}

func (a *Agent) commit() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	wasTrial := a.trial || !a.committed(a.self.BuildID)
	a.bs.MarkGood(a.Booted)
	if a.bs.First() != a.Booted && a.bs.Left[a.bs.First()] == 0 {
		a.bs.Prefer(a.Booted)
	}
	if err := a.writeState(); err != nil {
		a.Log.Error("mark slot good", "err", err)
		return err
	}
	a.trial = false
	if a.self.BuildID != "" {
		a.rec.Committed[a.Booted] = a.self.BuildID
	}
	if wasTrial && a.rec.LastSwitch != nil && a.rec.LastSwitch.To == a.Booted && !a.rec.Rollback {
		a.rec.LastSwitch.Reason = fmt.Sprintf("version %s committed: healthy within %s", a.self.Version, a.Window)
		a.rec.RollbackAcked = true // a good update clears an older rollback
	}
	if err := a.saveRecord(); err != nil {
		a.Log.Error("save slot record", "err", err)
	}
	a.Log.Info("slot marked good", "slot", a.Booted, "version", a.self.Version, "state", a.bs.String())
	return nil
}

func (a *Agent) giveUp(why string) {
	a.mu.Lock()
	a.rec.TrialFailure = &Failure{Slot: a.Booted, Version: a.self.Version, BuildID: a.self.BuildID, Reason: why, At: a.now()}
	if err := a.saveRecord(); err != nil {
		a.Log.Error("save slot record", "err", err)
	}
	a.mu.Unlock()
	a.Log.Error("slot on trial gives up; rebooting unmarked", "slot", a.Booted, "reason", why)
	a.Reboot(fmt.Sprintf("slot %s %s", a.Booted, why))
}

// Acknowledge clears the rollback warning (a short button press).
func (a *Agent) Acknowledge() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.started || !a.rec.Rollback || a.rec.RollbackAcked {
		return
	}
	a.rec.RollbackAcked = true
	if err := a.saveRecord(); err != nil {
		a.Log.Error("save slot record", "err", err)
	}
}

// RollbackReason is the unacknowledged rollback ("" when none): health
// shows it and the LED says degraded.
func (a *Agent) RollbackReason() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rec.Rollback && !a.rec.RollbackAcked && a.rec.LastSwitch != nil {
		return a.rec.LastSwitch.Reason
	}
	return ""
}

// Status is the "update" object's slot part.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	other := slot.Other(a.Booted)
	st := Status{
		BootedSlot:   a.Booted,
		Version:      a.self.Version,
		BuildID:      a.self.BuildID,
		Committed:    a.committed(a.self.BuildID),
		OtherSlot:    Other{Version: a.other.Version, State: a.bs.State(other, !a.otherOK)},
		LastSwitch:   a.rec.LastSwitch,
		HealthWindow: a.Window.String(),
		BootState:    a.bs.String(),
	}
	if a.rec.Rollback && !a.rec.RollbackAcked && a.rec.LastSwitch != nil {
		st.Rollback = a.rec.LastSwitch.Reason
	}
	if a.stateErr != "" {
		st.BootState += " (file unreadable: " + a.stateErr + ")"
	}
	return st
}

// DirBoot is a BootFS in a directory (the mounted boot partition, or a
// test's temporary directory); remount makes it writable for one write.
type DirBoot struct {
	Dir     string
	Remount func() (undo func(), err error)
}

func (d DirBoot) ReadState() ([]byte, error) {
	return os.ReadFile(filepath.Join(d.Dir, slot.StateFile))
}

// WriteState replaces the file by rename after an fsync, so a power cut
// leaves the old file or the new one (FAT renames in place; the script
// treats an unreadable file as the defaults).
func (d DirBoot) WriteState(data []byte) error {
	if d.Remount != nil {
		undo, err := d.Remount()
		if err != nil {
			return err
		}
		defer undo()
	}
	p := filepath.Join(d.Dir, slot.StateFile)
	tmp := p + ".new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	serr := f.Sync()
	f.Close()
	if serr != nil {
		return serr
	}
	return os.Rename(tmp, p)
}

// DirSlots reads slots from directories (slot name → directory).
type DirSlots map[string]string

func (d DirSlots) Manifest(s string) (slot.Manifest, error) {
	dir, ok := d[s]
	if !ok {
		return slot.Manifest{}, errors.New("no such slot")
	}
	return slot.ReadManifest(dir)
}

// Prepare readies slot s (the one not running) to be overwritten: no
// attempts and the running slot first, so a half-written slot is never
// booted, whatever happens during the write.
func (a *Agent) Prepare(s string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s == a.Booted {
		return fmt.Errorf("slot %s is running: an update never writes it", s)
	}
	a.bs.Left[s] = 0
	a.bs.Prefer(a.Booted)
	a.other, a.otherOK = slot.Manifest{}, false
	return a.writeState()
}

// SelectTrial selects slot s, just written and verified, for the next boot.
func (a *Agent) SelectTrial(s string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s == a.Booted {
		return fmt.Errorf("slot %s is running", s)
	}
	m, err := a.Slots.Manifest(s)
	if err != nil {
		return fmt.Errorf("slot %s after writing: %w", s, err)
	}
	a.other, a.otherOK = m, true
	a.bs.SetTrial(s)
	return a.writeState()
}

// Self is the running slot's manifest.
func (a *Agent) Self() slot.Manifest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.self
}
