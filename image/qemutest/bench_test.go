package qemutest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/snodebox/snodebox/image/assemble"
	"github.com/snodebox/snodebox/image/disk"
	"github.com/snodebox/snodebox/image/sdcard"
)

// Reference figures from DESIGN.md §8 (measured on these 2-core machines);
// ratios above 1 mean slower than measured then.
var reference = map[string]struct{ init, network float64 }{
	"virt":    {3.5, 6},
	"raspi3b": {5.5, 9.5},
}

// BenchmarkBoot boots each machine on a blank data disk and reports seconds
// from QEMU start to PID 1's first line, to the DHCP lease and to healthy,
// the RSS at healthy, and the image and binary sizes. Run with -benchtime 1x.
func BenchmarkBoot(b *testing.B) {
	for _, machine := range []string{"virt", "raspi3b"} {
		b.Run(machine, func(b *testing.B) {
			e := setup(b)
			bf := e.bootFiles(b, machine)
			for i := 0; i < b.N; i++ {
				state := e.freshState(b, "bench-"+machine)
				if _, _, err := disk.Ensure(filepath.Join(state, "data.img"), 512<<20); err != nil {
					b.Fatal(err)
				}
				bt := e.start(b, machine, state, bf, "bench-"+machine, "")
				first := bt.expect(guardMarker, "snodebox: init")
				netUp := bt.expect(guardMarker, "snodebox: network up")
				healthy := bt.expect(guardHealthy, "snodebox: healthy")
				st, _ := bt.status()
				bt.m.Kill()
				<-bt.m.Done()
				ref := reference[machine]
				b.ReportMetric(first.At.Seconds(), "s_to_init")
				b.ReportMetric(netUp.At.Seconds(), "s_to_network")
				b.ReportMetric(healthy.At.Seconds(), "s_to_healthy")
				b.ReportMetric(first.At.Seconds()/ref.init, "init_vs_ref")
				b.ReportMetric(netUp.At.Seconds()/ref.network, "network_vs_ref")
				b.ReportMetric(float64(st.Memory.RSSBytes)/1e6, "RSS_MB")
			}
			b.ReportMetric(float64(bf.Initramfs.RawBytes)/1e6, "initramfs_raw_MB")
			b.ReportMetric(float64(bf.Initramfs.GzipBytes)/1e6, "initramfs_gz_MB")
			if fi, err := os.Stat(e.snoded); err == nil {
				b.ReportMetric(float64(fi.Size())/1e6, "snoded_MB")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkImage builds the qemu-arm64 card and reports build seconds,
// image and slot sizes, QEMU power-on to healthy through U-Boot and the A/B
// script, and how long a rollback takes: from power-on with a panicking
// slot B selected to slot A marked good again.
func BenchmarkImage(b *testing.B) {
	e := setup(b)
	im := e.images(b) // also builds the bad slots
	out := filepath.Join(e.repo, "build", "qemutest", "bench-image", "card.img")
	bb := *e.b
	bb.Version = "bench"
	start := time.Now()
	st, err := bb.Image(context.Background(), assemble.ImageOptions{Board: "qemu-arm64", Out: out, Snoded: e.snoded})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(time.Since(start).Seconds(), "s_image_build")
	b.ReportMetric(float64(st.Bytes)/(1<<20), "image_MiB")
	b.ReportMetric(float64(st.SlotBytes)/1e6, "slot_MB")
	b.ReportMetric(float64(sdcard.DefaultLayout.SlotMiB), "slot_partition_MiB")
	b.ReportMetric(float64(st.Bytes)/(256<<20), "image_vs_256MiB")
	for i := 0; i < b.N; i++ {
		state := e.freshState(b, "bench-image")
		bt := e.startImage(b, state, im.base, "bench-image-1")
		healthy := bt.expect(guardHealthy, "snodebox: healthy")
		good := bt.expect(guardMarker, "slot marked good")
		bt.powerOff()
		card, err := sdcard.Open(bt.disk)
		if err != nil {
			b.Fatal(err)
		}
		if err := card.WriteSlot("B", im.slots["panic"]); err != nil {
			b.Fatal(err)
		}
		bs := cardState(b, bt.disk)
		bs.SetTrial("B")
		card.SetBootState(context.Background(), bs)
		bt2 := e.startImage(b, state, im.base, "bench-image-2")
		back := bt2.expect(guardHealthy*2, "slot marked good")
		bt2.m.Kill()
		<-bt2.m.Done()
		b.ReportMetric(healthy.At.Seconds(), "s_poweron_to_healthy")
		b.ReportMetric(good.At.Seconds(), "s_poweron_to_slot_good")
		b.ReportMetric(back.At.Seconds(), "s_rollback_poweron_to_good")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkUpdate installs a release through the channel on the qemu-arm64
// card: seconds to download and write the slot (from the agent starting to
// write to the slot being selected), bytes written, and seconds from the
// reboot into the new slot to its commit.
func BenchmarkUpdate(b *testing.B) {
	e := setup(b)
	k := e.updateKit(b)
	srv := startRelServer(b, filepath.Join(k.dir, "releases"))
	for i := 0; i < b.N; i++ {
		state := e.freshState(b, "bench-update")
		bt := e.startImageWith(b, state, k.card, "bench-update-1", srv.addr)
		bt.expect(guardHealthy, "slot marked good")
		srv.set("v2", false, false)
		w := bt.expect(guardHealthy, `msg="writing slot"`)
		inst := bt.expect(guardHealthy, "result=installed")
		bt.rebooted()
		bt2 := e.startImageWith(b, state, k.card, "bench-update-2", srv.addr)
		start := bt2.expect(guardMarker, "snodebox: booting slot B")
		done := bt2.expect(guardHealthy, "result=committed")
		bt2.m.Kill()
		<-bt2.m.Done()
		fi, err := os.Stat(filepath.Join(k.dir, "releases", "v2", "slot.img"))
		if err != nil {
			b.Fatal(err)
		}
		secs := (inst.At - w.At).Seconds()
		b.ReportMetric(secs, "s_download_install")
		b.ReportMetric(float64(fi.Size())/1e6, "MB_written")
		b.ReportMetric(float64(fi.Size())/1e6/secs, "MB/s")
		b.ReportMetric((done.At - start.At).Seconds(), "s_trial_boot_to_commit")
	}
	b.ReportMetric(0, "ns/op")
}
