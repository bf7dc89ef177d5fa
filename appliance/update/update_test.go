package update

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/snodebox/snodebox/appliance/slots"
	"github.com/snodebox/snodebox/image/release"
	"github.com/snodebox/snodebox/image/sdcard"
	"github.com/snodebox/snodebox/image/slot"
)

// fileSlot is a slot partition in a file.
type fileSlot struct {
	*os.File
	size int64
}

func (f fileSlot) Size() int64 { return f.size }

// fatSlots reads manifests out of slot images (A is a directory: the
// running system; B a partition file the agent writes).
type fatSlots struct{ a, b string }

func (f fatSlots) Manifest(s string) (slot.Manifest, error) {
	if s == "A" {
		return slot.ReadManifest(f.a)
	}
	data, err := sdcard.ReadFAT(context.Background(), f.b, slot.ManifestFile)
	if err != nil {
		return slot.Manifest{}, err
	}
	return slot.ParseManifest(data)
}

type kit struct {
	t        *testing.T
	dir      string
	rel      minisign.PrivateKey
	other    minisign.PrivateKey
	admin    minisign.PrivateKey
	slotFile string
	boot     string
	sl       *slots.Agent
	a        *Agent
	reboots  []string
}

func newKey(t *testing.T) minisign.PrivateKey {
	_, k, err := minisign.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newKit(t *testing.T) *kit {
	k := &kit{t: t, dir: t.TempDir(), rel: newKey(t), other: newKey(t), admin: newKey(t)}
	k.boot = filepath.Join(k.dir, "boot")
	a := filepath.Join(k.dir, "A")
	os.MkdirAll(k.boot, 0o755)
	os.MkdirAll(a, 0o755)
	os.WriteFile(filepath.Join(a, slot.KernelFile), []byte("kernel v1"), 0o644)
	m, _ := slot.NewManifest(a, "v1", "qemu-arm64", "6.1")
	os.WriteFile(filepath.Join(a, slot.ManifestFile), m.Marshal(), 0o644)
	os.WriteFile(filepath.Join(k.boot, slot.StateFile), slot.Fresh().Marshal(), 0o644)
	k.slotFile = filepath.Join(k.dir, "partB")
	os.WriteFile(k.slotFile, nil, 0o644)
	os.Truncate(k.slotFile, 88<<20)
	k.sl = &slots.Agent{Booted: "A", Boot: slots.DirBoot{Dir: k.boot}, Slots: fatSlots{a: a, b: k.slotFile}, DataDir: k.dir, Window: time.Minute,
		Healthy: func() (bool, []string) { return true, nil }, Reboot: func(string) {}}
	if err := k.sl.Start(); err != nil {
		t.Fatal(err)
	}
	k.a = &Agent{
		Board: "qemu-arm64", Slots: k.sl,
		OpenSlot: func(s string) (SlotDevice, error) {
			if s != "B" {
				return nil, errors.New("the test only has slot B")
			}
			f, err := os.OpenFile(k.slotFile, os.O_RDWR, 0)
			if err != nil {
				return nil, err
			}
			return fileSlot{f, 88 << 20}, nil
		},
		TrustedKeys: func() []minisign.PublicKey { return []minisign.PublicKey{release.PublicOf(k.rel)} },
		AdminKeys:   func() []minisign.PublicKey { return []minisign.PublicKey{release.PublicOf(k.admin)} },
		DataDir:     k.dir,
		Reboot:      func(r string) { k.reboots = append(k.reboots, r) },
	}
	k.a.Start()
	return k
}

// release makes a signed release of version whose slot image holds a
// small system.
func (k *kit) release(version string, index uint64, key minisign.PrivateKey, edit func(*release.Manifest)) (man, sig []byte, payload []byte) {
	k.t.Helper()
	sd := filepath.Join(k.dir, "src-"+version)
	os.MkdirAll(sd, 0o755)
	os.WriteFile(filepath.Join(sd, slot.KernelFile), []byte("kernel "+version), 0o644)
	sm, _ := slot.NewManifest(sd, version, "qemu-arm64", "6.1")
	os.WriteFile(filepath.Join(sd, slot.ManifestFile), sm.Marshal(), 0o644)
	img := filepath.Join(k.dir, "slot-"+version+".img")
	if err := sdcard.MakeSlotImage(context.Background(), img, 0, sd, version, time.Time{}); err != nil {
		k.t.Fatal(err)
	}
	payload, _ = os.ReadFile(img)
	sum := sha256.Sum256(payload)
	m := release.Manifest{Format: 1, Version: version, RollbackIndex: index, Board: "qemu-arm64", MinUpdater: 1, Slot: sm,
		Payloads: []release.Payload{{Name: release.SlotImageFile, Kind: release.KindSlotImage, Size: int64(len(payload)), SHA256: hex.EncodeToString(sum[:])}}}
	if edit != nil {
		edit(&m)
	}
	man = m.Marshal()
	return man, release.Sign(key, man, m), payload
}

// memSource serves a payload, failing once at failAt when set.
type memSource struct {
	data    []byte
	failAt  int64
	offsets []int64
}

type failingReader struct {
	r    io.Reader
	left int64
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, errors.New("connection reset by peer")
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= int64(n)
	return n, err
}

func (m *memSource) Open(ctx context.Context, name string, off int64) (io.ReadCloser, error) {
	m.offsets = append(m.offsets, off)
	r := io.Reader(bytes.NewReader(m.data[off:]))
	if m.failAt > 0 && off < m.failAt {
		r = &failingReader{r: r, left: m.failAt - off}
		m.failAt = 0
	}
	return io.NopCloser(r), nil
}

func TestInstallGoodReleaseResumesAndSelectsTheSlot(t *testing.T) {
	k := newKit(t)
	man, sig, payload := k.release("v2", 2, k.rel, nil)
	src := &memSource{data: payload, failAt: int64(len(payload) / 2)}
	at, err := k.a.Install(context.Background(), man, sig, src, "channel")
	if err != nil || at.Result != ResultInstalled {
		t.Fatalf("install: %+v, %v", at, err)
	}
	if len(src.offsets) != 2 || src.offsets[1] != int64(len(payload)/2) {
		t.Errorf("download offsets %v, want a resume from the middle", src.offsets)
	}
	written := make([]byte, len(payload))
	f, _ := os.Open(k.slotFile)
	f.ReadAt(written, 0)
	f.Close()
	if !bytes.Equal(written, payload) {
		t.Fatal("slot B does not hold the payload")
	}
	st := k.sl.Status()
	if st.OtherSlot.State != slot.StateTrying || st.OtherSlot.Version != "v2" || !strings.HasPrefix(st.BootState, "order B A") {
		t.Fatalf("after install: %+v", st)
	}
	if p := k.a.rec.Pending; p == nil || p.Version != "v2" || p.Slot != "B" || p.RollbackIndex != 2 {
		t.Fatalf("pending %+v", p)
	}
}

func TestRefusedBeforeWriting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		make   func(k *kit) ([]byte, []byte)
		reason string
	}{
		{"unknown key", func(k *kit) ([]byte, []byte) { m, s, _ := k.release("v2", 2, k.other, nil); return m, s }, "does not trust"},
		{"bad signature", func(k *kit) ([]byte, []byte) {
			m, s, _ := k.release("v2", 2, k.rel, nil)
			return bytes.Replace(m, []byte(`"rollback_index": 2`), []byte(`"rollback_index": 7`), 1), s
		}, "signature does not match"},
		{"wrong board", func(k *kit) ([]byte, []byte) {
			m, s, _ := k.release("v2", 2, k.rel, func(m *release.Manifest) { m.Board = "rpi4" })
			return m, s
		}, "is for a rpi4 board"},
		{"newer updater", func(k *kit) ([]byte, []byte) {
			m, s, _ := k.release("v2", 2, k.rel, func(m *release.Manifest) { m.MinUpdater = 9 })
			return m, s
		}, "needs updater 9"},
		{"already running", func(k *kit) ([]byte, []byte) { m, s, _ := k.release("v1", 2, k.rel, nil); return m, s }, "already running"},
		{"too big", func(k *kit) ([]byte, []byte) {
			m, s, _ := k.release("v2", 2, k.rel, func(m *release.Manifest) { m.Payloads[0].Size = 1 << 30 })
			return m, s
		}, "slot B holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKit(t)
			before, _ := os.ReadFile(filepath.Join(k.boot, slot.StateFile))
			man, sig := tc.make(k)
			at, err := k.a.Install(context.Background(), man, sig, &memSource{}, "channel")
			if err == nil || at.Result != ResultRefused || !strings.Contains(at.Reason, tc.reason) {
				t.Fatalf("got %+v, %v; want refused with %q", at, err, tc.reason)
			}
			after, _ := os.ReadFile(filepath.Join(k.boot, slot.StateFile))
			if !bytes.Equal(before, after) {
				t.Errorf("boot state changed: %q → %q", before, after)
			}
			if st := k.a.Status(); st.Last == nil || st.Last.Result != ResultRefused {
				t.Errorf("status last %+v", st.Last)
			}
		})
	}
}

func TestLowerRollbackIndexAndHashMismatch(t *testing.T) {
	k := newKit(t)
	k.a.rec.RollbackIndex = 3
	man, sig, _ := k.release("v2", 2, k.rel, nil)
	if at, _ := k.a.Install(context.Background(), man, sig, &memSource{}, "channel"); at.Result != ResultRefused || !strings.Contains(at.Reason, "lower than the installed 3") {
		t.Fatalf("lower index: %+v", at)
	}
	man, sig, payload := k.release("v4", 4, k.rel, func(m *release.Manifest) { m.Payloads[0].SHA256 = strings.Repeat("0", 64) })
	at, _ := k.a.Install(context.Background(), man, sig, &memSource{data: payload}, "channel")
	if at.Result != ResultRefused || !strings.Contains(at.Reason, "does not match its signed hash") {
		t.Fatalf("hash mismatch: %+v", at)
	}
	st := k.sl.Status()
	if st.OtherSlot.State == slot.StateTrying || !strings.HasPrefix(st.BootState, "order A B") || strings.Contains(st.BootState, "B=3") {
		t.Fatalf("a mismatching slot was left bootable: %+v", st)
	}
	if k.a.rec.Pending != nil {
		t.Fatal("pending after a refused download")
	}
}

func TestPushAuthentication(t *testing.T) {
	k := newKit(t)
	man, sig, payload := k.release("v2", 2, k.rel, nil)
	h := k.a.PushHandler()
	push := func(key minisign.PrivateKey, at time.Time) *httptest.ResponseRecorder {
		p := release.Push{Time: at, Manifest: man, Sig: sig}
		body := append(append(append([]byte{}, man...), sig...), payload...)
		req := httptest.NewRequest("POST", release.PushPath, bytes.NewReader(body))
		req.Header.Set(release.HeaderPushTime, strconv.FormatInt(at.UnixMilli(), 10))
		req.Header.Set(release.HeaderPushSig, base64.StdEncoding.EncodeToString(minisign.Sign(key, p.Statement())))
		req.Header.Set(release.HeaderPushLayout, fmt.Sprintf("%d,%d", len(man), len(sig)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	now := time.Now()
	if rec := push(k.other, now); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "not signed by an admin key") {
		t.Fatalf("wrong admin key: %d %s", rec.Code, rec.Body)
	}
	if rec := push(k.admin, now.Add(-time.Hour)); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "from the node's clock") {
		t.Fatalf("stale push: %d %s", rec.Code, rec.Body)
	}
	if rec := push(k.admin, now); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"result":"installed"`) {
		t.Fatalf("push: %d %s", rec.Code, rec.Body)
	}
	if rec := push(k.admin, now); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "replay") {
		t.Fatalf("replayed push: %d %s", rec.Code, rec.Body)
	}
}

func TestOutcomesAreRecorded(t *testing.T) {
	k := newKit(t)
	man, sig, payload := k.release("v2", 2, k.rel, nil)
	if at, err := k.a.Install(context.Background(), man, sig, &memSource{data: payload}, "push"); err != nil {
		t.Fatalf("%+v %v", at, err)
	}
	// The trial boot of B never came (its attempts ran out): A boots again
	// and the slot agent reports the rollback.
	bs, _ := slot.Parse(mustRead(t, filepath.Join(k.boot, slot.StateFile)))
	for bs.First() == "B" && bs.Left["B"] > 0 {
		_, bs, _ = bs.Next()
	}
	os.WriteFile(filepath.Join(k.boot, slot.StateFile), bs.Marshal(), 0o644)
	sl := &slots.Agent{Booted: "A", Boot: slots.DirBoot{Dir: k.boot}, Slots: k.sl.Slots, DataDir: k.dir, Window: time.Minute, Healthy: func() (bool, []string) { return true, nil }, Reboot: func(string) {}}
	if err := sl.Start(); err != nil {
		t.Fatal(err)
	}
	a2 := &Agent{Board: k.a.Board, Slots: sl, OpenSlot: k.a.OpenSlot, TrustedKeys: k.a.TrustedKeys, AdminKeys: k.a.AdminKeys, DataDir: k.dir, Reboot: k.a.Reboot}
	a2.Start()
	a2.reconcile()
	if st := a2.Status(); st.Last == nil || st.Last.Result != ResultRolledBack || !strings.Contains(st.Last.Reason, "did not start") || st.Index != 0 {
		t.Fatalf("after the failed trial: %+v", st.Last)
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
