package slots

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snodebox/snodebox/image/slot"
)

// card is a boot partition, two slot directories and a data directory,
// with the boot script's step between boots.
type card struct {
	t                *testing.T
	boot, a, b, data string
	healthy          atomic.Bool
	reboots          atomic.Int32
	lastReason       atomic.Value
}

func newCard(t *testing.T) *card {
	root := t.TempDir()
	c := &card{t: t, boot: filepath.Join(root, "boot"), a: filepath.Join(root, "A"), b: filepath.Join(root, "B"), data: filepath.Join(root, "data")}
	for _, d := range []string{c.boot, c.a, c.b, c.data} {
		os.MkdirAll(d, 0o755)
	}
	c.writeSlot(c.a, "v1")
	os.WriteFile(filepath.Join(c.boot, slot.StateFile), slot.Default().Marshal(), 0o644)
	return c
}

func (c *card) writeSlot(dir, version string) {
	os.WriteFile(filepath.Join(dir, slot.KernelFile), []byte("kernel "+version), 0o644)
	m, err := slot.NewManifest(dir, version, "qemu-arm64", "6.1")
	if err != nil {
		c.t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, slot.ManifestFile), m.Marshal(), 0o644)
}

func (c *card) state() slot.BootState {
	data, err := os.ReadFile(filepath.Join(c.boot, slot.StateFile))
	if err != nil {
		c.t.Fatal(err)
	}
	bs, err := slot.Parse(data)
	if err != nil {
		c.t.Fatal(err)
	}
	return bs
}

func (c *card) setState(bs slot.BootState) {
	os.WriteFile(filepath.Join(c.boot, slot.StateFile), bs.Marshal(), 0o644)
}

// trial writes version into slot s's directory and selects it for the
// next boot, as the update agent does.
func (c *card) trial(dir, s, version string) {
	c.writeSlot(dir, version)
	bs := c.state()
	bs.SetTrial(s)
	c.setState(bs)
}

// uboot does what boot.scr does and returns the slot it boots.
func (c *card) uboot() string {
	s, after, counted := c.state().Next()
	if counted {
		c.setState(after)
	}
	return s
}

func (c *card) agent(booted string) *Agent {
	return &Agent{
		Booted: booted, Boot: DirBoot{Dir: c.boot}, Slots: DirSlots{"A": c.a, "B": c.b}, DataDir: c.data,
		Window: 50 * time.Millisecond, PollPeriod: 5 * time.Millisecond,
		Healthy: func() (bool, []string) { return c.healthy.Load(), []string{"not in a swarm"} },
		Reboot: func(reason string) {
			c.reboots.Add(1)
			c.lastReason.Store(reason)
		},
	}
}

// boot runs one boot until the agent's Run returns or asks for a reboot.
func (c *card) boot1(healthy bool) *Agent {
	c.t.Helper()
	booted := c.uboot()
	c.healthy.Store(healthy)
	a := c.agent(booted)
	if err := a.Start(); err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	before := c.reboots.Load()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-done:
			cancel()
			if err != nil {
				c.t.Fatal(err)
			}
			return a
		case <-time.After(5 * time.Millisecond):
			if c.reboots.Load() != before {
				cancel()
				<-done
				return a
			}
		case <-deadline:
			// Not on trial and not healthy: the agent keeps waiting.
			cancel()
			<-done
			return a
		}
	}
}

func TestFreshCardCommitsSlotA(t *testing.T) {
	c := newCard(t)
	a := c.boot1(true)
	st := a.Status()
	if st.BootedSlot != "A" || !st.Committed || st.Version != "v1" || st.OtherSlot.State != slot.StateEmpty || st.LastSwitch != nil {
		t.Fatalf("status %+v", st)
	}
	if bs := c.state(); bs.Left["A"] != slot.MaxAttempts {
		t.Fatalf("A not given its attempts back: %s", bs)
	}
}

// With nothing to fall back to, missing the health window does not reboot:
// a card whose only system waits for a network cable keeps waiting.
func TestNoFallbackNoReboot(t *testing.T) {
	c := newCard(t)
	a := c.agent(c.uboot())
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	a.Run(ctx)
	if n := c.reboots.Load(); n != 0 {
		t.Fatalf("rebooted %d times with no other slot", n)
	}
	if a.Status().Committed {
		t.Fatal("committed without being healthy")
	}
}

func TestTrialNeverHealthyRollsBackWithItsReason(t *testing.T) {
	c := newCard(t)
	c.boot1(true) // A good
	c.trial(c.b, "B", "v2")
	for i := 0; i < slot.TrialAttempts; i++ {
		a := c.boot1(false)
		if a.Booted != "B" {
			t.Fatalf("attempt %d booted %s", i+1, a.Booted)
		}
		if !strings.Contains(c.lastReason.Load().(string), "was not healthy within 50ms: not in a swarm") {
			t.Fatalf("reboot reason %q", c.lastReason.Load())
		}
	}
	if n := c.reboots.Load(); n != slot.TrialAttempts {
		t.Fatalf("%d reboots, want %d", n, slot.TrialAttempts)
	}
	a := c.boot1(true)
	st := a.Status()
	if st.BootedSlot != "A" || st.OtherSlot.State != slot.StateBad || st.OtherSlot.Version != "v2" {
		t.Fatalf("after rollback: %+v", st)
	}
	if sw := st.LastSwitch; sw == nil || sw.From != "B" || sw.To != "A" || !strings.Contains(sw.Reason, "slot B (version v2) was not healthy within") {
		t.Fatalf("last switch %+v", st.LastSwitch)
	}
	if a.RollbackReason() == "" {
		t.Fatal("rollback not reported for the LED")
	}
	a.Acknowledge()
	if a.RollbackReason() != "" {
		t.Fatal("acknowledged rollback still reported")
	}
	// The acknowledgement survives a reboot; the rollback is not seen again.
	a = c.boot1(true)
	if a.RollbackReason() != "" || a.Status().LastSwitch.From != "B" {
		t.Fatalf("next boot: rollback %q switch %+v", a.RollbackReason(), a.Status().LastSwitch)
	}
	if bs := c.state(); bs.First() != "A" || bs.Left["B"] != 0 {
		t.Fatalf("boot state %s", bs)
	}
}

func TestTrialThatDiesSilentlyIsReported(t *testing.T) {
	c := newCard(t)
	c.boot1(true)
	c.trial(c.b, "B", "v2")
	// B's kernel panics: U-Boot counts the attempts, snoded never runs.
	for i := 0; i < slot.TrialAttempts; i++ {
		if s := c.uboot(); s != "B" {
			t.Fatalf("boot %d chose %s", i, s)
		}
	}
	a := c.boot1(true)
	if sw := a.Status().LastSwitch; sw == nil || !strings.Contains(sw.Reason, "slot B (version v2) did not start: its attempts ran out") {
		t.Fatalf("last switch %+v", sw)
	}
}

func TestGoodTrialCommitsAndClearsAnOldRollback(t *testing.T) {
	c := newCard(t)
	c.boot1(true)
	c.trial(c.b, "B", "v2")
	a := c.boot1(true)
	st := a.Status()
	if st.BootedSlot != "B" || !st.Committed || st.OtherSlot.State != slot.StateGood || st.OtherSlot.Version != "v1" {
		t.Fatalf("after trial: %+v", st)
	}
	if sw := st.LastSwitch; sw == nil || sw.From != "A" || sw.To != "B" || !strings.Contains(sw.Reason, "v2 committed") {
		t.Fatalf("switch %+v", sw)
	}
	// Rewriting A makes it a trial again: the committed build id no
	// longer matches.
	c.trial(c.a, "A", "v3")
	a = c.boot1(true)
	if st := a.Status(); st.BootedSlot != "A" || st.Version != "v3" || !st.Committed || st.OtherSlot.Version != "v2" {
		t.Fatalf("v3 trial: %+v", st)
	}
}

func TestUnreadableBootStateUsesTheScriptDefaults(t *testing.T) {
	c := newCard(t)
	os.WriteFile(filepath.Join(c.boot, slot.StateFile), []byte("BOOT_ORDER=Z\n"), 0o644)
	a := c.agent("A")
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if st := a.Status(); !strings.Contains(st.BootState, "unreadable") {
		t.Fatalf("status %+v does not say the file is unreadable", st)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := (&Agent{Booted: "C"}).Start(); err == nil {
		t.Error("slot C accepted")
	}
}
