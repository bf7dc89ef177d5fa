package qemutest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/snodebox/snodebox/image/disk"
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
