package board

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func fakeDT(t *testing.T, root string, compatible []string, model, serial string) {
	files := map[string]string{"proc/device-tree/compatible": strings.Join(compatible, "\x00") + "\x00"}
	if model != "" {
		files["proc/device-tree/model"] = model + "\x00"
	}
	if serial != "" {
		files["proc/device-tree/serial-number"] = serial + "\x00"
	}
	mkfiles(t, root, files)
}

func TestBoardName(t *testing.T) {
	tests := []struct {
		compatible []string
		want       string
	}{
		{[]string{"raspberrypi,3-model-b", "brcm,bcm2837"}, "rpi3"},
		{[]string{"raspberrypi,3-model-b-plus", "brcm,bcm2837"}, "rpi3"},
		{[]string{"raspberrypi,4-model-b", "brcm,bcm2711"}, "rpi4"},
		{[]string{"linux,dummy-virt"}, "qemu-virt"},
		{[]string{"raspberrypi,400", "brcm,bcm2711"}, "sim"},
		{nil, "sim"},
	}
	for _, tc := range tests {
		if got := BoardName(tc.compatible); got != tc.want {
			t.Errorf("BoardName(%q) = %q, want %q", tc.compatible, got, tc.want)
		}
	}
}

func TestReadInfoAndTemperature(t *testing.T) {
	root := t.TempDir()
	fakeDT(t, root, []string{"raspberrypi,4-model-b", "brcm,bcm2711"}, "Raspberry Pi 4 Model B Rev 1.4", "10000000abcdef01")
	mkfiles(t, root, map[string]string{"sys/class/thermal/thermal_zone0/temp": "48312\n"})
	r := RootAt(root)
	in := ReadInfo(r)
	if in != (Info{Name: "rpi4", Model: "Raspberry Pi 4 Model B Rev 1.4", Serial: "10000000abcdef01"}) {
		t.Fatalf("info %+v", in)
	}
	c, ok := ReadTemperature(r)
	if !ok || c != 48.312 {
		t.Fatalf("temperature %v %v, want 48.312", c, ok)
	}

	// Older kernels: serial only in /proc/cpuinfo.
	root = t.TempDir()
	fakeDT(t, root, []string{"raspberrypi,3-model-b", "brcm,bcm2837"}, "Raspberry Pi 3 Model B Rev 1.2", "")
	mkfiles(t, root, map[string]string{"proc/cpuinfo": "processor\t: 0\nHardware\t: BCM2835\nRevision\t: a02082\nSerial\t\t: 00000000c0ffee00\nModel\t\t: Raspberry Pi 3 Model B Rev 1.2\n"})
	in = ReadInfo(RootAt(root))
	if in.Name != "rpi3" || in.Serial != "00000000c0ffee00" {
		t.Fatalf("cpuinfo serial: %+v", in)
	}
	if _, ok := ReadTemperature(RootAt(root)); ok {
		t.Fatal("temperature without a thermal zone")
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDetectRaspberryPiDrivesACT(t *testing.T) {
	root := t.TempDir()
	fakeDT(t, root, []string{"raspberrypi,3-model-b-plus", "brcm,bcm2837"}, "Raspberry Pi 3 Model B Plus Rev 1.3", "00000000deadbeef")
	led := filepath.Join(root, "sys", "class", "leds", "ACT")
	mkfiles(t, led, map[string]string{"trigger": allTriggers, "brightness": "0", "max_brightness": "1"})
	b := DetectAt(RootAt(root), nil, nil)
	defer b.Close()
	if b.Info().Name != "rpi3" || b.Info().Serial != "00000000deadbeef" {
		t.Fatalf("info %+v", b.Info())
	}
	if b.LED() != LEDBooting {
		t.Fatalf("LED starts as %v, want booting", b.LED())
	}
	read := func(attr string) string {
		v, _ := os.ReadFile(filepath.Join(led, attr))
		return string(v)
	}
	if err := b.SetLED(LEDDegraded); err != nil {
		t.Fatal(err)
	}
	if read("trigger") != "pattern" || !strings.HasPrefix(read("pattern"), "1 150 1 0 0 200 0 0") {
		t.Fatalf("degraded: trigger %q pattern %q", read("trigger"), read("pattern"))
	}
	if err := b.SetLED(LEDHealthy); err != nil {
		t.Fatal(err)
	}
	if read("trigger") != "oneshot" || read("invert") != "1" || b.LED() != LEDHealthy {
		t.Fatalf("healthy: trigger %q invert %q", read("trigger"), read("invert"))
	}
	b.Traffic()
	if read("shot") != "1" {
		t.Fatalf("traffic did not fire the oneshot: %q", read("shot"))
	}
	if err := b.SetLED(LEDState(42)); err == nil {
		t.Fatal("invalid LED state accepted")
	}
	if _, err := b.OpenWatchdog(); err != ErrNoWatchdog {
		t.Fatalf("watchdog on a tree without /dev/watchdog: %v", err)
	}
}

func TestDetectQEMUPrintsLEDOnConsole(t *testing.T) {
	root := t.TempDir()
	fakeDT(t, root, []string{"linux,dummy-virt"}, "", "")
	var console syncBuf
	b := NewHardware(HardwareConfig{Info: ReadInfo(RootAt(root)), Root: RootAt(root), Console: &console, ScanFor: time.Millisecond})
	defer b.Close()
	if b.Info().Name != "qemu-virt" {
		t.Fatalf("info %+v", b.Info())
	}
	for _, s := range []LEDState{LEDBooting, LEDSyncing, LEDSyncing, LEDHealthy} {
		if err := b.SetLED(s); err != nil {
			t.Fatal(err)
		}
	}
	want := "snodebox: led booting\nsnodebox: led syncing\nsnodebox: led healthy\n"
	if console.String() != want {
		t.Fatalf("console %q, want %q (one line per change)", console.String(), want)
	}
	// DetectAt picks the same board from the tree.
	d := DetectAt(RootAt(root), nil, nil)
	defer d.Close()
	if _, ok := d.(*Hardware); !ok || d.Info().Name != "qemu-virt" {
		t.Fatalf("DetectAt gave %T %+v", d, d.Info())
	}
}

func TestDetectUnknownIsSim(t *testing.T) {
	b := DetectAt(RootAt(t.TempDir()), nil, nil)
	if _, ok := b.(*Sim); !ok || b.Info().Name != "sim" {
		t.Fatalf("unknown hardware gave %T %+v", b, b.Info())
	}
}

// PID 1 opens the board before it loads leds-gpio and the ledtrig modules:
// the LED and its triggers must be picked up when they appear.
func TestLateLEDAndTriggers(t *testing.T) {
	root := t.TempDir()
	fakeDT(t, root, []string{"raspberrypi,3-model-b"}, "Raspberry Pi 3 Model B Rev 1.2", "")
	b := DetectAt(RootAt(root), nil, nil)
	defer b.Close()
	if err := b.SetLED(LEDBooting); err != nil {
		t.Fatal(err)
	}
	// leds-gpio loads: ACT appears with only the built-in triggers.
	led := filepath.Join(root, "sys", "class", "leds", "ACT")
	mkfiles(t, led, map[string]string{"trigger": "[none] mmc0", "brightness": "0", "max_brightness": "1"})
	b.(*Hardware).retryLED()
	read := func(attr string) string {
		v, _ := os.ReadFile(filepath.Join(led, attr))
		return string(v)
	}
	if read("trigger") != "none" {
		t.Fatalf("found LED not driven: trigger %q", read("trigger"))
	}
	b.(*Hardware).cfg.LED.(*SysfsLED).Close() // stop the software blink before swapping triggers in
	// ledtrig-timer and ledtrig-pattern load: the next state uses them.
	os.WriteFile(filepath.Join(led, "trigger"), []byte("[none] mmc0 timer pattern oneshot"), 0o644)
	if err := b.SetLED(LEDSyncing); err != nil {
		t.Fatal(err)
	}
	if read("trigger") != "timer" || read("delay_on") != "1000" {
		t.Fatalf("late timer trigger unused: trigger %q delay_on %q", read("trigger"), read("delay_on"))
	}
}
