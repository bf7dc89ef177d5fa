package qemutest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/snodebox/snodebox/appliance/slots"
	"github.com/snodebox/snodebox/image/assemble"
	"github.com/snodebox/snodebox/image/qemu"
	"github.com/snodebox/snodebox/image/release"
	"github.com/snodebox/snodebox/image/sdcard"
	"github.com/snodebox/snodebox/image/slot"
)

// relServer is the release channel on the host's loopback: the guest
// reaches it as http://10.0.2.100/channel/, which serves whichever release
// directory the test selects, with Range, and can misbehave on purpose.
type relServer struct {
	root string
	mu   sync.Mutex
	cur  string // release directory name; "" = 404
	// dropHalf closes the payload connection halfway once.
	dropHalf bool
	// slow sends the payload at about 1 MB/s.
	slow   bool
	ranges []string
	addr   string
}

func (s *relServer) set(cur string, dropHalf, slow bool) {
	s.mu.Lock()
	s.cur, s.dropHalf, s.slow = cur, dropHalf, slow
	s.mu.Unlock()
}

func (s *relServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/channel/")
	s.mu.Lock()
	cur, drop, slow := s.cur, s.dropHalf, s.slow
	if ok && name == release.SlotImageFile {
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		if r.Header.Get("Range") == "" {
			s.dropHalf = false
		}
	}
	s.mu.Unlock()
	if !ok || cur == "" || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filepath.Join(s.root, cur, name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, _ := f.Stat()
	if name == release.SlotImageFile && r.Header.Get("Range") == "" && (drop || slow) {
		w.Header().Set("Content-Length", fmt.Sprint(fi.Size()))
		w.WriteHeader(http.StatusOK)
		buf := make([]byte, 64<<10)
		var sent int64
		for {
			n, _ := f.Read(buf)
			if n == 0 {
				return
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			sent += int64(n)
			if drop && sent >= fi.Size()/2 {
				// Halfway: the connection dies.
				if hj, ok := w.(http.Hijacker); ok {
					if c, _, err := hj.Hijack(); err == nil {
						c.Close()
					}
				}
				return
			}
			if slow {
				w.(http.Flusher).Flush()
				time.Sleep(60 * time.Millisecond)
			}
		}
	}
	http.ServeContent(w, r, name, fi.ModTime(), f)
}

func startRelServer(t testing.TB, root string) *relServer {
	s := &relServer{root: root}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: s}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

type updateKit struct {
	dir                       string
	rel, other, admin, admin2 minisign.PrivateKey
	card                      string
	v2Slot                    slot.Manifest
}

func key(t testing.TB, dir, name string) minisign.PrivateKey {
	t.Helper()
	kd := filepath.Join(dir, "keys", name)
	os.RemoveAll(kd)
	if _, err := release.Keygen(kd, ""); err != nil {
		t.Fatal(err)
	}
	k, err := release.LoadSecretKey(filepath.Join(kd, release.SecretKeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubText(k minisign.PrivateKey) []byte {
	return []byte(release.KeyLine(release.PublicOf(k)) + "\n")
}

// resign writes a copy of release src as dst with the manifest edited and
// signed by k.
func resign(t testing.TB, root, src, dst string, k minisign.PrivateKey, edit func(*release.Manifest)) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, src, release.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := release.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	edit(&m)
	d := filepath.Join(root, dst)
	os.MkdirAll(d, 0o755)
	os.Remove(filepath.Join(d, release.SlotImageFile))
	if err := os.Link(filepath.Join(root, src, release.SlotImageFile), filepath.Join(d, release.SlotImageFile)); err != nil {
		t.Fatal(err)
	}
	if err := release.WriteSigned(d, m, k); err != nil {
		t.Fatal(err)
	}
}

func (e *env) updateKit(t testing.TB) *updateKit {
	t.Helper()
	ctx := context.Background()
	im := e.images(t)
	k := &updateKit{dir: e.scratch(t, "update")}
	k.rel, k.other, k.admin, k.admin2 = key(t, k.dir, "rel"), key(t, k.dir, "other"), key(t, k.dir, "admin"), key(t, k.dir, "admin2")
	b := *e.b
	b.Version = "v1"
	k.card = filepath.Join(k.dir, "card.img")
	if _, err := b.Image(ctx, assemble.ImageOptions{Board: "qemu-arm64", Out: k.card, Snoded: e.snoded, ReleaseKeys: pubText(k.rel), AdminKeys: pubText(k.admin)}); err != nil {
		t.Fatal(err)
	}
	card, err := sdcard.Open(k.card)
	if err != nil {
		t.Fatal(err)
	}
	toml := fmt.Sprintf("[update]\nchannel = \"http://%s/channel/\"\ninterval = \"10s\"\nhealth_window = \"60s\"\n", strings.TrimSuffix(qemu.UpdateGuestAddr, ":80"))
	if err := card.WriteFile(ctx, slot.PartBoot, "snodebox.toml", []byte(toml)); err != nil {
		t.Fatal(err)
	}
	rels := filepath.Join(k.dir, "releases")
	mk := func(version string, index uint64) {
		b := *e.b
		b.Version = version
		if _, err := b.Release(ctx, assemble.ReleaseOptions{Board: "qemu-arm64", RollbackIndex: index, Snoded: e.snoded, Key: k.rel, AdminKeys: pubText(k.admin), Out: filepath.Join(rels, version)}); err != nil {
			t.Fatal(err)
		}
	}
	mk("v2", 2)
	mk("v4", 4)
	mk("v5", 5)
	// v3: a real release whose init exits at once.
	exitSlot := filepath.Join(filepath.Dir(im.slots["exit"]), "slot-exit")
	sm, err := slot.ReadManifest(exitSlot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := assemble.ReleaseFromSlot(ctx, exitSlot, sm, "v3", assemble.ReleaseOptions{Board: "qemu-arm64", RollbackIndex: 3, Key: k.rel, Out: filepath.Join(rels, "v3")}); err != nil {
		t.Fatal(err)
	}
	// Refused ones, each with another system than the one running (the same
	// system as the running one is "nothing new", not a refusal).
	resign(t, rels, "v2", "badsig", k.rel, func(m *release.Manifest) { m.Version = "v2-badsig" })
	badsig := filepath.Join(rels, "badsig", release.ManifestFile)
	data, _ := os.ReadFile(badsig)
	os.WriteFile(badsig, []byte(strings.Replace(string(data), `"rollback_index": 2`, `"rollback_index": 9`, 1)), 0o644)
	resign(t, rels, "v2", "unknownkey", k.other, func(m *release.Manifest) { m.Version = "v2-unknownkey" })
	resign(t, rels, "v2", "wrongboard", k.rel, func(m *release.Manifest) { m.Version = "v2-rpi4"; m.Board = "rpi4" })
	resign(t, rels, "v4", "lowindex", k.rel, func(m *release.Manifest) { m.Version = "v1.5"; m.RollbackIndex = 1 })
	resign(t, rels, "v2", "badhash", k.rel, func(m *release.Manifest) {
		m.Version = "v2-badhash"
		m.Payloads[0].SHA256 = strings.Repeat("ab", 32)
	})
	return k
}

// rebooted waits for the guest's clean reboot and ends that QEMU (a
// U-Boot boot would go on in the same process; the next boot gets a fresh
// console watcher).
func (bt *boot) rebooted() {
	bt.tb.Helper()
	bt.expect(guardHealthy, "snodebox: reboot")
	bt.m.Kill()
	<-bt.m.Done()
}

// waitLast waits until update.last is about version and has its outcome
// (installed is the step before the trial boot's verdict).
func (bt *boot) waitLast(version string) slots.Status {
	bt.tb.Helper()
	var last struct {
		Update struct {
			slots.Status
			Last *struct{ Version, Result, Reason string } `json:"last"`
		} `json:"update"`
	}
	deadline := time.Now().Add(guardHealthy)
	for time.Now().Before(deadline) {
		_, body := bt.status()
		if err := json.Unmarshal(body, &last); err == nil && last.Update.Last != nil && last.Update.Last.Version == version && last.Update.Last.Result != "installed" {
			bt.tb.Logf("%s: update.last: %s %s: %s", bt.name, version, last.Update.Last.Result, last.Update.Last.Reason)
			bt.lastResult, bt.lastReason = last.Update.Last.Result, last.Update.Last.Reason
			return last.Update.Status
		}
		time.Sleep(time.Second)
	}
	bt.fail("update.last never reached version %s", version)
	return slots.Status{}
}

func (bt *boot) ed25519() string {
	bt.tb.Helper()
	_, body := bt.status()
	var s struct {
		Ed string `json:"ed25519"`
	}
	json.Unmarshal(body, &s)
	return s.Ed
}

// The update issue end to end on one card: refusals before any write, a
// good update through the channel that survives a dropped download, a
// downgrade refused, a bad release rolled back by itself, pushes with the
// wrong and the right admin key, and a power cut during the slot write.
func TestSignedUpdates(t *testing.T) {
	e := setup(t)
	k := e.updateKit(t)
	srv := startRelServer(t, filepath.Join(k.dir, "releases"))
	state := e.freshState(t, "update")
	n := 0
	boot := func() *boot {
		n++
		bt := e.startImageWith(t, state, k.card, fmt.Sprintf("update-%d", n), srv.addr)
		return bt
	}
	bt := boot()
	bt.expect(guardHealthy, "slot marked good")
	ed := bt.ed25519()
	signer := newAccount(t)
	msg := newMessage(t)
	storeMessage(bt, signer, msg)

	// Refused before any write, each with its reason.
	for _, tc := range []struct{ dir, version, reason string }{
		{"badsig", "v2-badsig", "signature does not match"},
		{"unknownkey", "v2-unknownkey", "does not trust"},
		{"wrongboard", "v2-rpi4", "is for a rpi4 board"},
		{"badhash", "v2-badhash", "does not match its signed hash"},
	} {
		srv.set(tc.dir, false, false)
		u := bt.waitLast(tc.version)
		if bt.lastResult != "refused" || !strings.Contains(bt.lastReason, tc.reason) {
			bt.fail("%s: %s %q, want refused with %q", tc.dir, bt.lastResult, bt.lastReason, tc.reason)
		}
		if u.BootedSlot != "A" || u.OtherSlot.State == slot.StateTrying || !strings.HasPrefix(u.BootState, "order A B") {
			bt.fail("%s: a refused release changed the slots: %+v", tc.dir, u)
		}
	}

	// A good update 1 → 2, the download cut halfway once.
	srv.set("v2", true, false)
	bt.expect(guardHealthy, "snodebox: update reboot: update to v2")
	bt.rebooted()
	srv.mu.Lock()
	ranges := append([]string(nil), srv.ranges...)
	srv.mu.Unlock()
	resumed := false
	for _, r := range ranges {
		resumed = resumed || strings.HasPrefix(r, "bytes=")
	}
	if !resumed {
		t.Fatalf("the dropped download was not resumed with Range: requests %q", ranges)
	}
	bt = boot()
	bt.expect(guardMarker, "snodebox: booting slot B")
	u := bt.waitLast("v2")
	if bt.lastResult != "committed" || u.BootedSlot != "B" || u.Version != "v2" || u.OtherSlot.Version != "v1" || u.OtherSlot.State != slot.StateGood {
		bt.fail("after the update to v2: %s, %+v", bt.lastResult, u)
	}
	if got := bt.ed25519(); got != ed {
		bt.fail("identity changed across the update: %s → %s", ed, got)
	}
	retrieveHas(bt, signer, msg)

	// A downgrade below the installed rollback index.
	srv.set("lowindex", false, false)
	bt.waitLast("v1.5")
	if bt.lastResult != "refused" || !strings.Contains(bt.lastReason, "rollback index 1, lower than the installed 2") {
		bt.fail("lower rollback index: %s %q", bt.lastResult, bt.lastReason)
	}

	// Version 3, whose init exits: tried, rolled back to 2 by itself.
	srv.set("v3", false, false)
	bt.expect(guardHealthy, "snodebox: update reboot: update to v3")
	bt.rebooted()
	bt = boot()
	bt.expect(guardMarker, "snodebox: booting slot A")
	bt.expect(guardHealthy, "snodebox-test: init exits")
	bt.expect(guardHealthy*2, "snodebox: rollback from=A")
	u = bt.waitLast("v3")
	if bt.lastResult != "rolled-back" || !strings.Contains(bt.lastReason, "did not start") || u.BootedSlot != "B" || u.Version != "v2" {
		bt.fail("v3: %s %q, %+v", bt.lastResult, bt.lastReason, u)
	}

	// Pushes: a wrong admin key is refused, the right one installs v4.
	srv.set("", false, false)
	ctx := context.Background()
	code, answer, err := release.PushTo(ctx, bt.rpcURL(), filepath.Join(k.dir, "releases", "v4"), k.admin2)
	if err != nil || code != http.StatusForbidden || !strings.Contains(answer, "not signed by an admin key") {
		t.Fatalf("push with a wrong admin key: %d %q %v", code, answer, err)
	}
	code, answer, err = release.PushTo(ctx, bt.rpcURL(), filepath.Join(k.dir, "releases", "v4"), k.admin)
	if err != nil || code != http.StatusOK || !strings.Contains(answer, "installed") {
		t.Fatalf("push: %d %q %v", code, answer, err)
	}
	bt.expect(guardHealthy, "snodebox: update reboot: update to v4")
	bt.rebooted()
	bt = boot()
	bt.expect(guardMarker, "snodebox: booting slot A")
	u = bt.waitLast("v4")
	if bt.lastResult != "committed" || u.Version != "v4" || u.BootedSlot != "A" {
		bt.fail("after the push of v4: %s, %+v", bt.lastResult, u)
	}

	// Power cut during the slot write: the old slot boots, and the agent
	// tries again and finishes.
	srv.set("v5", false, true)
	bt.expect(guardHealthy, `msg="writing slot"`)
	time.Sleep(5 * time.Second)
	bt.m.Kill()
	<-bt.m.Done()
	srv.set("v5", false, false)
	bt = boot()
	bt.expect(guardMarker, "snodebox: booting slot A")
	bt.expect(guardHealthy, "slot marked good")
	bt.expect(guardHealthy, "snodebox: update reboot: update to v5")
	bt.rebooted()
	bt = boot()
	bt.expect(guardMarker, "snodebox: booting slot B")
	u = bt.waitLast("v5")
	if bt.lastResult != "committed" || u.Version != "v5" {
		bt.fail("v5 after the power cut: %s, %+v", bt.lastResult, u)
	}
	retrieveHas(bt, signer, msg)
	bt.powerOff()
}
