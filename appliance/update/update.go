// Package update is snoded's update agent: it follows a release channel and
// takes pushes from an admin, checks each release (signature by a trusted
// key, board, rollback index, not already installed, fits the slot) before
// writing anything, streams the slot image into the inactive slot with HTTP
// Range resume while hashing it, and selects that slot for a trial boot
// only once the written bytes match the signed hash. The slot agent's health
// window then commits the update or rolls it back; this agent records the
// outcome.
package update

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"aead.dev/minisign"

	"github.com/snodebox/snodebox/appliance/slots"
	"github.com/snodebox/snodebox/image/release"
	"github.com/snodebox/snodebox/image/slot"
)

// Results of an attempt.
const (
	ResultCommitted  = "committed"
	ResultRolledBack = "rolled-back"
	ResultRefused    = "refused" // a check failed before anything was written
	ResultFailed     = "failed"  // writing or verifying failed; the running system is as it was
	ResultInstalled  = "installed"
)

// Attempt is one update attempt.
type Attempt struct {
	Version string    `json:"version"`
	Result  string    `json:"result"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
	From    string    `json:"from,omitempty"` // "channel" or "push"
}

// Pending is an installed release waiting for its trial boot's verdict.
type Pending struct {
	Version       string    `json:"version"`
	Slot          string    `json:"slot"`
	BuildID       string    `json:"build_id"`
	RollbackIndex uint64    `json:"rollback_index"`
	At            time.Time `json:"at"`
	From          string    `json:"from"`
}

// Record is system/updates.json on the data partition.
type Record struct {
	RollbackIndex uint64    `json:"rollback_index"`
	Pending       *Pending  `json:"pending,omitempty"`
	Attempts      []Attempt `json:"attempts"`
	LastPushMs    int64     `json:"last_push_ms"`
}

// RecordFile is the record's path under the data directory.
const RecordFile = "system/updates.json"

// keepAttempts is how many attempts the record keeps.
const keepAttempts = 20

// SlotDevice is the inactive slot's partition, opened for writing.
type SlotDevice interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
	Size() int64
}

// Source gives a release's payload from an offset (Range resume).
type Source interface {
	Open(ctx context.Context, name string, offset int64) (io.ReadCloser, error)
}

// Agent is the update agent.
type Agent struct {
	Board string
	Slots *slots.Agent
	// OpenSlot opens a slot's partition for writing.
	OpenSlot func(s string) (SlotDevice, error)
	// TrustedKeys and AdminKeys are read at each check (slot files plus
	// snodebox.toml).
	TrustedKeys func() []minisign.PublicKey
	AdminKeys   func() []minisign.PublicKey
	Channel     string // release directory URL ("" = no automatic updates)
	Interval    time.Duration
	Inhibit     bool
	DataDir     string
	Client      *http.Client
	// Quiet reports a good moment to reboot (no traffic just now).
	Quiet  func() bool
	Reboot func(reason string)
	Log    *slog.Logger
	// FirstCheck is the delay before the first channel check once the
	// running slot is committed.
	FirstCheck time.Duration
	// Retries is how many times a dropped download resumes (default 5).
	Retries int

	mu        sync.Mutex
	rec       Record
	updating  bool
	available string
	busy      sync.Mutex // one install at a time
	closing   bool
}

func (a *Agent) path() string { return filepath.Join(a.DataDir, RecordFile) }

func (a *Agent) load() {
	a.rec = Record{}
	if data, err := os.ReadFile(a.path()); err == nil {
		if err := json.Unmarshal(data, &a.rec); err != nil {
			a.Log.Warn("update record unreadable; starting a new one", "err", err)
			a.rec = Record{}
		}
	}
}

func (a *Agent) save() {
	data, _ := json.MarshalIndent(a.rec, "", "  ")
	p := a.path()
	os.MkdirAll(filepath.Dir(p), 0o755)
	tmp := p + ".tmp"
	f, err := os.Create(tmp)
	if err == nil {
		_, err = f.Write(append(data, '\n'))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		a.Log.Error("save update record", "err", err)
	}
}

func (a *Agent) record(at Attempt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rec.Attempts = append(a.rec.Attempts, at)
	if n := len(a.rec.Attempts); n > keepAttempts {
		a.rec.Attempts = a.rec.Attempts[n-keepAttempts:]
	}
	a.save()
	lvl := slog.LevelInfo
	if at.Result == ResultRefused || at.Result == ResultFailed || at.Result == ResultRolledBack {
		lvl = slog.LevelWarn
	}
	a.Log.Log(context.Background(), lvl, "update", "version", at.Version, "result", at.Result, "reason", at.Reason, "from", at.From)
}

// Start loads the record.
func (a *Agent) Start() {
	if a.Log == nil {
		a.Log = slog.New(slog.DiscardHandler)
	}
	if a.Client == nil {
		a.Client = &http.Client{Timeout: 0}
	}
	if a.Retries == 0 {
		a.Retries = 5
	}
	a.mu.Lock()
	a.load()
	a.mu.Unlock()
}

// Stop refuses new installs (the node is shutting down).
func (a *Agent) Stop() {
	a.mu.Lock()
	a.closing = true
	a.mu.Unlock()
}

// reconcile settles a pending install against what booted.
func (a *Agent) reconcile() {
	a.mu.Lock()
	p := a.rec.Pending
	a.mu.Unlock()
	if p == nil {
		return
	}
	st := a.Slots.Status()
	switch {
	case st.BootedSlot == p.Slot && st.BuildID == p.BuildID && st.Committed:
		a.mu.Lock()
		if p.RollbackIndex > a.rec.RollbackIndex {
			a.rec.RollbackIndex = p.RollbackIndex
		}
		a.rec.Pending = nil
		a.mu.Unlock()
		a.record(Attempt{Version: p.Version, Result: ResultCommitted, Reason: fmt.Sprintf("slot %s healthy within %s", p.Slot, st.HealthWindow), At: time.Now(), From: p.From})
	case st.BootedSlot != p.Slot && st.LastSwitch != nil && st.LastSwitch.From == p.Slot && st.LastSwitch.At.After(p.At):
		a.mu.Lock()
		a.rec.Pending = nil
		a.mu.Unlock()
		a.record(Attempt{Version: p.Version, Result: ResultRolledBack, Reason: st.LastSwitch.Reason, At: time.Now(), From: p.From})
	case st.BootedSlot != p.Slot && st.OtherSlot.State != slot.StateTrying:
		// Neither tried nor selected any more (the slot was changed by
		// hand, or the boot state was lost).
		a.mu.Lock()
		a.rec.Pending = nil
		a.mu.Unlock()
		a.record(Attempt{Version: p.Version, Result: ResultFailed, Reason: "the installed slot was never booted (its selection was lost)", At: time.Now(), From: p.From})
	}
}

// Run follows the channel until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	first := a.FirstCheck
	if first == 0 {
		first = time.Minute
	}
	t := time.NewTimer(first)
	defer t.Stop()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		a.reconcile()
		// A reboot for an installed trial that has not happened yet (the
		// node was busy, or restarted) is still owed.
		a.mu.Lock()
		p := a.rec.Pending
		a.mu.Unlock()
		if p != nil && a.Slots.Status().BootedSlot != p.Slot && a.Slots.Status().OtherSlot.State == slot.StateTrying {
			a.rebootWhenQuiet(ctx, p.Version)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			continue
		case <-t.C:
		}
		next := a.Interval
		if next <= 0 {
			next = 6 * time.Hour
		}
		// ±10 % jitter: a shelf of boards does not hit the server at once.
		next += time.Duration((rand.Float64()*0.2 - 0.1) * float64(next))
		t.Reset(next)
		if a.Channel == "" || a.Inhibit || !a.Slots.Status().Committed {
			continue
		}
		if err := a.CheckChannel(ctx); err != nil {
			a.Log.Warn("update channel", "channel", a.Channel, "err", err)
		}
	}
}

// httpSource reads a release directory over HTTP(S).
type httpSource struct {
	base   string
	client *http.Client
}

func (h httpSource) url(name string) string { return strings.TrimRight(h.base, "/") + "/" + name }

func (h httpSource) get(ctx context.Context, name string, max int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url(name), nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", h.url(name), resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, max))
}

func (h httpSource) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url(name), nil)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	want := http.StatusOK
	if offset > 0 {
		want = http.StatusPartialContent
	}
	if resp.StatusCode != want {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s from byte %d: %s", h.url(name), offset, resp.Status)
	}
	return resp.Body, nil
}

// CheckChannel fetches the channel's manifest and installs it when it is
// new.
func (a *Agent) CheckChannel(ctx context.Context) error {
	src := httpSource{base: a.Channel, client: a.Client}
	man, err := src.get(ctx, release.ManifestFile, 1<<20)
	if err != nil {
		return err
	}
	sig, err := src.get(ctx, release.SignatureFile, 64<<10)
	if err != nil {
		return err
	}
	// Nothing new: the same manifest as what runs or what was last refused.
	if m, err := release.ParseManifest(man); err == nil {
		if m.Slot.BuildID == a.Slots.Self().BuildID {
			a.setAvailable("")
			return nil
		}
		if a.lastTried(m.Version) {
			return nil
		}
	}
	_, err = a.Install(ctx, man, sig, src, "channel")
	return err
}

// lastTried: the newest attempt was this version and did not end in a
// reboot that is still owed; the channel is not retried for it until it
// changes (a refused or rolled-back release stays refused).
func (a *Agent) lastTried(version string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := len(a.rec.Attempts)
	if n == 0 {
		return false
	}
	last := a.rec.Attempts[n-1]
	if last.Version != version {
		return false
	}
	// A failed write (power cut, dropped network) is worth another try.
	return last.Result != ResultFailed
}

func (a *Agent) setAvailable(v string) {
	a.mu.Lock()
	a.available = v
	a.mu.Unlock()
}

// refusal is a check that failed before writing.
type refusal struct{ msg string }

func (r refusal) Error() string { return r.msg }

func refuse(f string, args ...any) error { return refusal{fmt.Sprintf(f, args...)} }

// check verifies a release against this node; nothing is written.
func (a *Agent) check(man, sig []byte) (release.Manifest, error) {
	var m release.Manifest
	keys := a.TrustedKeys()
	if len(keys) == 0 {
		return m, refuse("this node trusts no release key (build the image with --release-key or add update.release_keys)")
	}
	if _, err := release.Verify(keys, man, sig); err != nil {
		if errors.Is(err, release.ErrUnknownKey) {
			return m, refuse("the release is %v; it is not from the publisher this node follows", err)
		}
		return m, refuse("the release's signature does not match its manifest: it was changed or damaged after signing")
	}
	m, err := release.ParseManifest(man)
	if err != nil {
		return m, refuse("the signed manifest is not readable by this updater: %v", err)
	}
	self := a.Slots.Self()
	a.mu.Lock()
	installed := a.rec.RollbackIndex
	a.mu.Unlock()
	p := m.SlotPayload()
	switch {
	case m.Board != a.Board:
		return m, refuse("release %s is for a %s board; this node is a %s", m.Version, m.Board, a.Board)
	case m.MinUpdater > release.UpdaterVersion:
		return m, refuse("release %s needs updater %d; this node has %d (install an intermediate release first)", m.Version, m.MinUpdater, release.UpdaterVersion)
	case m.RollbackIndex < installed:
		return m, refuse("release %s has rollback index %d, lower than the installed %d: a downgrade to an older, possibly vulnerable system", m.Version, m.RollbackIndex, installed)
	case m.Slot.BuildID == self.BuildID || m.Version == self.Version:
		return m, refuse("version %s is already running", m.Version)
	}
	other := slot.Other(a.Slots.Status().BootedSlot)
	dev, err := a.OpenSlot(other)
	if err != nil {
		return m, refuse("cannot open slot %s: %v", other, err)
	}
	size := dev.Size()
	dev.Close()
	if p.Size > size {
		return m, refuse("release %s needs %d MB, slot %s holds %d MB", m.Version, p.Size/1e6, other, size/1e6)
	}
	return m, nil
}

// Install checks a release and, if it passes, writes it into the inactive
// slot and selects that slot for a trial boot, then reboots at a quiet
// moment. The attempt is recorded whatever happens.
func (a *Agent) Install(ctx context.Context, man, sig []byte, src Source, from string) (Attempt, error) {
	if !a.busy.TryLock() {
		return Attempt{}, errors.New("another update is being installed")
	}
	defer a.busy.Unlock()
	a.mu.Lock()
	closing, inhibit := a.closing, a.Inhibit
	a.mu.Unlock()
	version := "?"
	if m, err := release.ParseManifest(man); err == nil {
		version = m.Version
	}
	at := Attempt{Version: version, At: time.Now(), From: from}
	if closing {
		at.Result, at.Reason = ResultRefused, "the node is shutting down"
		a.record(at)
		return at, errors.New(at.Reason)
	}
	if inhibit {
		at.Result, at.Reason = ResultRefused, "updates are switched off (update.inhibit = true)"
		a.record(at)
		return at, errors.New(at.Reason)
	}
	m, err := a.check(man, sig)
	if err != nil {
		at.Result, at.Reason = ResultRefused, err.Error()
		a.record(at)
		return at, err
	}
	a.setAvailable(m.Version)
	a.mu.Lock()
	a.updating = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.updating = false
		a.mu.Unlock()
	}()
	other := slot.Other(a.Slots.Status().BootedSlot)
	if err := a.write(ctx, m, other, src); err != nil {
		at.Result, at.Reason = ResultFailed, err.Error()
		var r refusal
		if errors.As(err, &r) {
			at.Result = ResultRefused
		}
		a.record(at)
		return at, err
	}
	a.mu.Lock()
	a.rec.Pending = &Pending{Version: m.Version, Slot: other, BuildID: m.Slot.BuildID, RollbackIndex: m.RollbackIndex, At: time.Now(), From: from}
	a.mu.Unlock()
	at.Result, at.Reason = ResultInstalled, fmt.Sprintf("written to slot %s and selected for a trial boot", other)
	a.record(at)
	return at, nil
}

// write streams the payload into slot s, hashing as it goes, resuming a
// dropped download from where it stopped; it selects s only when the
// bytes on the partition match the signed hash.
func (a *Agent) write(ctx context.Context, m release.Manifest, s string, src Source) error {
	p := m.SlotPayload()
	if err := a.Slots.Prepare(s); err != nil {
		return fmt.Errorf("prepare slot %s: %w", s, err)
	}
	dev, err := a.OpenSlot(s)
	if err != nil {
		return fmt.Errorf("open slot %s: %w", s, err)
	}
	defer dev.Close()
	a.Log.Info("writing slot", "slot", s, "version", m.Version, "bytes", p.Size)
	h := sha256.New()
	var off int64
	buf := make([]byte, 1<<20)
	failures := 0
	for off < p.Size {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("stopped while writing slot %s: %w", s, err)
		}
		a.mu.Lock()
		closing := a.closing
		a.mu.Unlock()
		if closing {
			return errors.New("the node is shutting down; the slot was left unmarked")
		}
		body, err := src.Open(ctx, p.Name, off)
		if err == nil {
			var n int64
			n, err = copyAt(dev, body, off, p.Size, h, buf)
			body.Close()
			off += n
			if n > 0 {
				failures = 0
			}
		}
		if err != nil && off < p.Size {
			failures++
			if failures > a.Retries {
				return fmt.Errorf("download of %s stopped at %d of %d bytes: %v", p.Name, off, p.Size, err)
			}
			a.Log.Warn("download interrupted; resuming", "at", off, "of", p.Size, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(failures) * time.Second):
			}
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return refuse("the downloaded %s does not match its signed hash (got %s…, want %s…); slot %s was not marked bootable", p.Name, got[:12], p.SHA256[:12], s)
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("sync slot %s: %w", s, err)
	}
	// Read back what the card holds: a failing card is caught here, not at
	// the next boot.
	h.Reset()
	if _, err := io.CopyBuffer(h, io.NewSectionReader(dev, 0, p.Size), buf); err != nil {
		return fmt.Errorf("read back slot %s: %w", s, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return fmt.Errorf("slot %s reads back differently from what was written: the card may be failing", s)
	}
	dev.Close()
	if err := a.Slots.SelectTrial(s); err != nil {
		return err
	}
	if got := a.Slots.Status().OtherSlot; got.Version != m.Slot.Version {
		return fmt.Errorf("slot %s holds version %q after writing, want %q", s, got.Version, m.Slot.Version)
	}
	return nil
}

// copyAt copies r to w at off up to limit bytes, hashing; it returns what
// it wrote.
func copyAt(w io.WriterAt, r io.Reader, off, limit int64, h io.Writer, buf []byte) (int64, error) {
	var n int64
	for off+n < limit {
		want := int64(len(buf))
		if rest := limit - off - n; rest < want {
			want = rest
		}
		k, err := r.Read(buf[:want])
		if k > 0 {
			if _, werr := w.WriteAt(buf[:k], off+n); werr != nil {
				return n, werr
			}
			h.Write(buf[:k])
			n += int64(k)
		}
		if err == io.EOF {
			if off+n < limit {
				return n, io.ErrUnexpectedEOF
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// rebootWhenQuiet reboots into the trial slot once nothing is being stored
// (or after 10 minutes of waiting for that).
func (a *Agent) rebootWhenQuiet(ctx context.Context, version string) {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) && a.Quiet != nil && !a.Quiet() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	a.Log.Info("rebooting into the updated slot", "version", version)
	a.Reboot("update to " + version)
	<-ctx.Done()
}

// Status is the agent's part of the "update" object.
type Status struct {
	Last      *Attempt
	Available string
	Updating  bool
	Index     uint64
}

// Status reports the last attempt, what the channel offers and whether a
// slot is being written.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{Available: a.available, Updating: a.updating, Index: a.rec.RollbackIndex}
	if n := len(a.rec.Attempts); n > 0 {
		l := a.rec.Attempts[n-1]
		st.Last = &l
	}
	return st
}
