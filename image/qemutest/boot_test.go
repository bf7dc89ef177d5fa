package qemutest

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snodebox/snodebox/image/disk"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// storeAndRetrieve stores msg for signer's account and returns the
// retrieve answer's body.
func storeMessage(bt *boot, s *rpcclient.Signer, msg message) {
	bt.tb.Helper()
	now := time.Now().UnixMilli()
	body := bt.rpc("store", s.Store(rpcclient.StoreArgs{Data: msg.data, Timestamp: now, TTL: 14 * 24 * 3600 * 1000}))
	if !strings.Contains(string(body), "hash") {
		bt.fail("store answer has no hash: %s", body)
	}
}

func retrieveHas(bt *boot, s *rpcclient.Signer, msg message) {
	bt.tb.Helper()
	body := bt.rpc("retrieve", s.Retrieve(rpcclient.RetrieveArgs{Timestamp: time.Now().UnixMilli()}))
	var ans struct {
		Messages []struct {
			Data string `json:"data"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		bt.fail("retrieve answer: %v: %s", err, body)
	}
	for _, m := range ans.Messages {
		if m.Data == msg.b64 {
			return
		}
	}
	bt.fail("retrieve: stored message not among %d messages: %s", len(ans.Messages), body)
}

func checkInfo(bt *boot) {
	bt.tb.Helper()
	body := bt.rpc("info", rpcclient.Info())
	var info map[string]any
	if err := json.Unmarshal(body, &info); err != nil {
		bt.fail("info answer: %v: %s", err, body)
	}
	if _, ok := info["version"]; !ok {
		bt.fail("info answer has no version: %s", body)
	}
	bt.tb.Logf("%s: info: %s", bt.name, strings.TrimSpace(string(body)))
}

// QEMU -M virt, first boot on a blank disk, then a second boot of the same
// state after the disk file grew: the contract's (g) and (h) end to end.
func TestVirtBootServesPowersOffAndGrowsDataDisk(t *testing.T) {
	e := setup(t)
	bf := e.bootFiles(t, "virt")
	state := e.freshState(t, "virt")
	img := filepath.Join(state, "data.img")
	const size1, size2 = 512 << 20, 768 << 20
	if created, _, err := disk.Ensure(img, size1); err != nil || !created {
		t.Fatalf("create data disk: created=%v err=%v", created, err)
	}
	checkMBRFresh(t, img, size1)

	signer := newAccount(t)
	msg := newMessage(t)

	// First boot: PID 1 formats the blank partition and grows it.
	b1 := e.start(t, "virt", state, bf, "virt-boot1", "")
	b1.expect(guardMarker, "snodebox: init")
	b1.expect(guardMarker, fmt.Sprintf("snodebox: modules loaded count=%d", bf.Initramfs.Modules))
	b1.expect(guardMarker, "snodebox: data mounted dev=/dev/vda1 formatted=true grown=true")
	b1.expect(guardMarker, "snodebox: network up if=")
	b1.expect(guardMarker, "snodebox: clock synced=")
	b1.expect(guardMarker, "snodebox: services started")
	b1.expect(guardHealthy, "snodebox: healthy")
	checkInfo(b1)
	storeMessage(b1, signer, msg)
	retrieveHas(b1, signer, msg)
	st, raw := b1.status()
	if !st.Healthy || st.Board.Name != "qemu-virt" {
		b1.fail("status.json after healthy: healthy=%v board=%q: %s", st.Healthy, st.Board.Name, raw)
	}
	// The filesystem fills the grown partition, not the 64 MiB it started in.
	fs1 := st.Disk.TotalBytes
	if fs1 < size1*8/10 {
		b1.fail("status.json disk total %d bytes on a %d-byte disk: filesystem not grown: %s", fs1, size1, raw)
	}
	b1.powerOff()
	checkMBRFills(t, img)

	// The user gives the VM a bigger disk: the next boot grows again,
	// without formatting, and the stored message is still there.
	if _, extended, err := disk.Ensure(img, size2); err != nil || !extended {
		t.Fatalf("extend data disk: extended=%v err=%v", extended, err)
	}
	b2 := e.start(t, "virt", state, bf, "virt-boot2", "")
	b2.expect(guardMarker, "snodebox: init")
	b2.expect(guardMarker, "snodebox: data mounted dev=/dev/vda1 formatted=false grown=true")
	b2.expect(guardHealthy, "snodebox: healthy")
	retrieveHas(b2, signer, msg)
	st, raw = b2.status()
	if st.Disk.TotalBytes < fs1+(size2-size1)*8/10 {
		b2.fail("status.json disk total %d bytes, was %d before the disk grew by %d: filesystem not grown: %s", st.Disk.TotalBytes, fs1, size2-size1, raw)
	}
	t.Logf("data filesystem: %d bytes on the 512 MiB disk, %d bytes after it grew to 768 MiB", fs1, st.Disk.TotalBytes)
	b2.powerOff()
	checkMBRFills(t, img)
}

// QEMU -M raspi3b with Debian's Pi 3 kernel, DTB and module closure: SD
// card data partition, USB network and the ACT LED.
func TestRaspi3bBootSDCardUSBNetLED(t *testing.T) {
	e := setup(t)
	bf := e.bootFiles(t, "raspi3b")
	state := e.freshState(t, "raspi3b")
	img := filepath.Join(state, "data.img")
	const size = 512 << 20 // QEMU wants SD cards sized a power of two
	if _, _, err := disk.Ensure(img, size); err != nil {
		t.Fatal(err)
	}
	checkMBRFresh(t, img, size)

	// The runner keeps the watchdog closed on raspi3b (snode.watchdog=0);
	// TestRaspi3bWatchdogOpensAndResetsTheMachine covers it.
	bt := e.start(t, "raspi3b", state, bf, "raspi3b", "")
	bt.expect(guardMarker, "snodebox: init")
	bt.expect(guardMarker, fmt.Sprintf("snodebox: modules loaded count=%d", bf.Initramfs.Modules))
	bt.expect(guardMarker, "snodebox: data mounted dev=/dev/mmcblk0p1 formatted=true grown=true")
	bt.expect(guardMarker, "snodebox: network up if=usb0")
	bt.expect(guardHealthy, "snodebox: healthy")
	bt.expect(guardMarker, "snodebox: led healthy")
	checkInfo(bt)
	st, raw := bt.status()
	if st.Board.Name != "rpi3" {
		bt.fail("status.json board %q, want rpi3: %s", st.Board.Name, raw)
	}
	// The LED state the page shows is the one PID 1 drives through
	// /sys/class/leds/ACT (the test DTB puts it on GPIO 47).
	if st.LED != "healthy" {
		bt.fail("status.json led %q, want healthy: %s", st.LED, raw)
	}
	// QEMU's raspi3b has no power key: end the guest from outside.
	bt.m.Kill()
	<-bt.m.Done()
	checkMBRFills(t, img)
}

// The Pi 3 watchdog: bcm2835_wdt from the closure binds, and PID 1 opens
// /dev/watchdog. QEMU 7.2 models the BCM2835 PM watchdog's start (a write
// of the full-reset config to PM_RSTC) as an immediate machine reset, so
// with -no-reboot the opening shows as QEMU exiting cleanly right after the
// board comes up: no kernel panic, and no reboot that PID 1 asked for.
func TestRaspi3bWatchdogOpensAndResetsTheMachine(t *testing.T) {
	e := setup(t)
	bf := e.bootFiles(t, "raspi3b")
	state := e.freshState(t, "raspi3b-watchdog")
	if _, _, err := disk.Ensure(filepath.Join(state, "data.img"), 512<<20); err != nil {
		t.Fatal(err)
	}
	bt := e.start(t, "raspi3b", state, bf, "raspi3b-watchdog", "snode.watchdog=1")
	bt.expect(guardMarker, "bcm2835-wdt: Broadcom BCM2835 watchdog timer")
	bt.expect(guardMarker, fmt.Sprintf("snodebox: modules loaded count=%d", bf.Initramfs.Modules))
	select {
	case <-bt.m.Done():
	case <-time.After(guardMarker):
		bt.fail("QEMU still running %s after modules loaded: the watchdog was not started", guardMarker)
	}
	if err := bt.m.Wait(); err != nil {
		bt.fail("qemu exit: %v", err)
	}
	text := bt.m.Console.Text()
	for _, bad := range []string{"Kernel panic", "snodebox: reboot", "snodebox: power off", "snodebox: data mounted"} {
		if strings.Contains(text, bad) {
			bt.fail("console has %q: the machine did not stop at the watchdog", bad)
		}
	}
}
