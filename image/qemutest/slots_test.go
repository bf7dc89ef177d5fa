package qemutest

import (
	"context"

	"strings"
	"testing"

	"github.com/snodebox/snodebox/appliance/slots"
	"github.com/snodebox/snodebox/image/sdcard"
	"github.com/snodebox/snodebox/image/slot"
)

// bootFreshCard boots a new copy of the card to healthy with slot A marked
// good, and powers it off: the "good A" every rollback case starts from.
func (e *env) bootFreshCard(t *testing.T, name string) (state string, bt *boot) {
	t.Helper()
	im := e.images(t)
	state = e.freshState(t, name)
	bt = e.startImage(t, state, im.base, name+"-1")
	bt.expect(guardMarker, "snodebox: booting slot A")
	bt.expect(guardHealthy, "snodebox: healthy")
	bt.expect(guardMarker, "slot marked good")
	return state, bt
}

// A fresh qemu-arm64 card boots through U-Boot into slot A, grows its data
// partition, reaches healthy, marks A good, and serves the RPC.
func TestImageBootsSlotAThroughUBoot(t *testing.T) {
	e := setup(t)
	_, bt := e.bootFreshCard(t, "image-fresh")
	l := bt.expect(guardMarker, "snodebox: data mounted")
	if !strings.Contains(l.Text, "dev=/dev/vda4") || !strings.Contains(l.Text, "grown=true") {
		bt.fail("data partition: %q, want /dev/vda4 grown on first boot", l.Text)
	}
	if !strings.Contains(bt.expect(guardMarker, "Kernel command line").Text, "snode.slot=A") {
		bt.fail("kernel command line does not say snode.slot=A")
	}
	u := bt.waitUpdate(guardMarker, "slot A committed", func(u slots.Status) bool { return u.Committed })
	// Both slots hold the built system: B is a good fallback from the start.
	if u.BootedSlot != "A" || u.Version != "v1" || u.OtherSlot.State != slot.StateGood || u.OtherSlot.Version != "v1" || u.LastSwitch != nil {
		bt.fail("update object %+v, want booted A, version v1, other slot v1 good, no switch", u)
	}
	signer := newAccount(t)
	msg := newMessage(t)
	checkInfo(bt)
	storeMessage(bt, signer, msg)
	retrieveHas(bt, signer, msg)
	bt.powerOff()
	bs := cardState(t, bt.disk)
	if bs.Left["A"] != slot.MaxAttempts || bs.Left["B"] != slot.MaxAttempts || bs.First() != "A" {
		t.Fatalf("boot state after a good boot: %s, want A first, both with %d attempts", bs, slot.MaxAttempts)
	}

}

// From a good slot A, slot B is written and selected for trial; B fails in
// one of the ways a bad release fails, and the card ends on A by itself,
// healthy, with B marked bad and the reason in last_switch.
func TestRollbackToGoodSlot(t *testing.T) {
	e := setup(t)
	cases := []struct {
		slot   string
		marker string // console line that shows B failing
		reason string // in last_switch.reason
	}{
		{"panic", "Kernel panic", "attempts ran out"},
		{"exit", "snodebox-test: init exits", "attempts ran out"},
		{"unhealthy", "slot gives up", "was not healthy within 20s"},
	}
	for _, tc := range cases {
		t.Run(tc.slot, func(t *testing.T) {
			state, bt := e.bootFreshCard(t, "rollback-"+tc.slot)
			bt.powerOff()
			card, err := sdcard.Open(bt.disk)
			if err != nil {
				t.Fatal(err)
			}
			if err := card.WriteSlot("B", e.images(t).slots[tc.slot]); err != nil {
				t.Fatal(err)
			}
			bs := cardState(t, bt.disk)
			bs.SetTrial("B")
			if err := card.SetBootState(context.Background(), bs); err != nil {
				t.Fatal(err)
			}
			bt2 := e.startImage(t, state, e.images(t).base, "rollback-"+tc.slot+"-2")
			bt2.expect(guardMarker, "snodebox: booting slot B")
			bt2.expect(guardHealthy, tc.marker)
			bt2.expect(guardHealthy*2, "snodebox: booting slot A")
			bt2.expect(guardHealthy, "snodebox: rollback from=B")
			// Healthy, but the LED says degraded until acknowledged: the
			// slot is still marked good.
			bt2.expect(guardHealthy, "snodebox: led degraded")
			bt2.expect(guardHealthy, "slot marked good")
			u := bt2.waitUpdate(guardMarker, "slot A committed", func(u slots.Status) bool { return u.Committed })
			if u.BootedSlot != "A" || u.OtherSlot.State != slot.StateBad || u.OtherSlot.Version != "v2-"+tc.slot {
				bt2.fail("after rollback: %+v, want booted A, other slot v2-%s bad", u, tc.slot)
			}
			sw := u.LastSwitch
			if sw == nil || sw.From != "B" || sw.To != "A" || !strings.Contains(sw.Reason, tc.reason) || sw.At.IsZero() {
				bt2.fail("last_switch %+v, want B → A with a reason containing %q", sw, tc.reason)
			}
			if u.Rollback == "" {
				bt2.fail("rollback not flagged for the LED: %+v", u)
			}
			st, _ := bt2.status()
			if st.LED != "degraded" || !st.Healthy {
				bt2.fail("after a rollback: led %s healthy %v, want degraded and healthy", st.LED, st.Healthy)
			}
			t.Logf("last_switch: %s → %s: %s", sw.From, sw.To, sw.Reason)
			bt2.powerOff()
			bs = cardState(t, bt2.disk)
			if bs.First() != "A" || bs.Left["B"] != 0 || bs.Left["A"] != slot.MaxAttempts {
				t.Fatalf("boot state after the rollback: %s, want A first with %d attempts, B none", bs, slot.MaxAttempts)
			}
		})
	}
}

// A trial slot that becomes healthy is committed: the switch is recorded
// and the old slot stays as the good fallback.
func TestTrialSlotCommits(t *testing.T) {
	e := setup(t)
	state, bt := e.bootFreshCard(t, "trial-good")
	bt.powerOff()
	card, err := sdcard.Open(bt.disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := card.WriteSlot("B", e.images(t).slots["good"]); err != nil {
		t.Fatal(err)
	}
	bs := cardState(t, bt.disk)
	bs.SetTrial("B")
	if err := card.SetBootState(context.Background(), bs); err != nil {
		t.Fatal(err)
	}
	bt2 := e.startImage(t, state, e.images(t).base, "trial-good-2")
	bt2.expect(guardMarker, "snodebox: booting slot B")
	bt2.expect(guardHealthy, "snodebox: healthy")
	u := bt2.waitUpdate(guardMarker, "slot B committed", func(u slots.Status) bool { return u.Committed })
	if u.BootedSlot != "B" || u.Version != "v2" || u.OtherSlot.State != slot.StateGood || u.OtherSlot.Version != "v1" {
		bt2.fail("after the trial: %+v, want booted B v2, other slot v1 good", u)
	}
	if sw := u.LastSwitch; sw == nil || sw.From != "A" || sw.To != "B" || !strings.Contains(sw.Reason, "committed") {
		bt2.fail("last_switch %+v, want A → B committed", sw)
	}
	bt2.powerOff()
	bs = cardState(t, bt2.disk)
	if bs.First() != "B" || bs.Left["B"] != slot.MaxAttempts || bs.Left["A"] == 0 {
		t.Fatalf("boot state after commit: %s", bs)
	}
}
