package clock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// StateFile is the name of the persisted time inside the data directory.
const StateFile = "clock.last"

// BuildFloor is a time the clock is certainly past: any earlier reading
// comes from a board without an RTC that booted at 1970. Set by the linker
// as Unix seconds, or the default below (the project's start).
var BuildFloor = "1763769600" // 2025-11-22

func floor() time.Time {
	n, err := strconv.ParseInt(BuildFloor, 10, 64)
	if err != nil {
		return time.Unix(1763769600, 0)
	}
	return time.Unix(n, 0)
}

// Sane reports whether t is plausible (not before the build floor).
func Sane(t time.Time) bool { return !t.Before(floor()) }

// Persist writes t (Unix nanoseconds, text) atomically to path.
func Persist(path string, t time.Time) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(t.UnixNano(), 10)+"\n"), 0o644); err != nil {
		return fmt.Errorf("persist time %s: %w", tmp, err)
	}
	if f, err := os.Open(tmp); err == nil {
		f.Sync()
		f.Close()
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("persist time %s: %w", path, err)
	}
	return nil
}

// Load reads a persisted time.
func Load(path string) (time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, fmt.Errorf("read persisted time: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("persisted time %s: %w", path, err)
	}
	return time.Unix(0, n), nil
}

// Clock keeps the system time: restore, sync, persist.
type Clock struct {
	Servers   []string
	StatePath string                // persisted time ("" = none)
	Now       func() time.Time      // nil = time.Now
	Set       func(time.Time) error // nil = settimeofday(2)
	Log       *slog.Logger
	// Resync and PersistEvery pace Run (defaults 1 h and 10 min).
	Resync       time.Duration
	PersistEvery time.Duration
	Timeout      time.Duration // per sync attempt (default 5 s)

	mu       sync.Mutex
	synced   bool
	lastSync time.Time
	lastErr  string
	offset   time.Duration
}

func (c *Clock) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Clock) set(t time.Time) error {
	if c.Set != nil {
		return c.Set(t)
	}
	return SetSystem(t)
}

func (c *Clock) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.Default()
}

// Restore moves the clock forward to the persisted time when the clock is
// behind it (a Pi boots at 1970), or at least to the build floor when there
// is no saved time yet (first boot without a time server), as systemd does
// with its build time: a wrong-by-months clock is still far better than
// 1970 for certificates, logs and expiry arithmetic. It never moves the
// clock backwards. It returns the time set, or zero when nothing changed.
func (c *Clock) Restore() (time.Time, error) {
	target := floor()
	if c.StatePath != "" {
		saved, err := Load(c.StatePath)
		switch {
		case err == nil:
			if saved.After(target) {
				target = saved
			}
		case !errors.Is(err, os.ErrNotExist):
			c.log().Warn("persisted time unreadable; using the build floor", "err", err)
		}
	}
	if !c.now().Before(target) {
		return time.Time{}, nil
	}
	if err := c.set(target); err != nil {
		return time.Time{}, fmt.Errorf("restore time %s: %w", target.UTC().Format(time.RFC3339), err)
	}
	c.log().Info("clock restored", "time", target.UTC().Format(time.RFC3339))
	return target, nil
}

// Sync queries the servers once and steps the clock by the median offset.
func (c *Clock) Sync(ctx context.Context) (bool, error) {
	if len(c.Servers) == 0 {
		c.record(false, 0, "no time servers configured")
		return false, errors.New("no time servers configured")
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	offset, samples, errs, ok := QueryAll(qctx, c.Servers, c.Now)
	if !ok {
		err := fmt.Errorf("no time server answered: %w", errors.Join(errs...))
		c.record(false, 0, err.Error())
		return false, err
	}
	// Step only when it matters; small errors are below what anyone checks.
	if offset > 100*time.Millisecond || offset < -100*time.Millisecond {
		if err := c.set(c.now().Add(offset)); err != nil {
			c.record(false, offset, err.Error())
			return false, fmt.Errorf("set clock: %w", err)
		}
	}
	c.record(true, offset, "")
	c.log().Info("clock synced", "offset", offset.Round(time.Millisecond), "servers", len(samples), "failed", len(errs))
	c.Persist()
	return true, nil
}

func (c *Clock) record(ok bool, offset time.Duration, errMsg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.synced = true
		c.lastSync = c.now()
		c.offset = offset
	}
	c.lastErr = errMsg
}

// Synced reports whether any sync succeeded since boot.
func (c *Clock) Synced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.synced
}

// LastError is the last sync failure ("" after a success).
func (c *Clock) LastError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Persist saves the current time (shutdown and periodically); it refuses to
// save an insane time so a bad boot cannot poison the next one.
func (c *Clock) Persist() error {
	if c.StatePath == "" {
		return nil
	}
	t := c.now()
	if !Sane(t) {
		return fmt.Errorf("not persisting implausible time %s", t.UTC().Format(time.RFC3339))
	}
	if err := os.MkdirAll(filepath.Dir(c.StatePath), 0o755); err != nil {
		return fmt.Errorf("persist time: %w", err)
	}
	return Persist(c.StatePath, t)
}

// Run keeps syncing (quickly at first until one sync succeeds, then every
// Resync) and persists every PersistEvery, until ctx ends; then it persists
// a last time.
func (c *Clock) Run(ctx context.Context) error {
	resync, every := c.Resync, c.PersistEvery
	if resync <= 0 {
		resync = time.Hour
	}
	if every <= 0 {
		every = 10 * time.Minute
	}
	retry := 15 * time.Second
	first := time.Duration(0)
	if c.Synced() {
		first = resync // boot already synced before starting services
	}
	nextSync := time.NewTimer(first)
	defer nextSync.Stop()
	persist := time.NewTicker(every)
	defer persist.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := c.Persist(); err != nil {
				c.log().Warn("persist time", "err", err)
			}
			return nil
		case <-persist.C:
			if err := c.Persist(); err != nil {
				c.log().Warn("persist time", "err", err)
			}
		case <-nextSync.C:
			if len(c.Servers) == 0 {
				continue // nothing to ask; the timer stays stopped
			}
			if ok, err := c.Sync(ctx); ok {
				nextSync.Reset(resync)
			} else {
				c.log().Debug("clock sync failed", "err", err, "retry", retry)
				nextSync.Reset(retry)
				retry = min(retry*2, resync)
			}
		}
	}
}
