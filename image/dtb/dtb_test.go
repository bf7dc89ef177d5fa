package dtb

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const dts = `/dts-v1/;
/ {
	chosen { };
	soc { gpio: gpio@7e200000 { gpio-controller; #gpio-cells = <2>; }; };
	expgpio: expgpio { gpio-controller; #gpio-cells = <2>; };
	leds { led-act { label = "ACT"; gpios = <&expgpio 2 0>; }; };
};
`

func TestTweakSeedsRNGAndMovesTheActLEDToGPIO47(t *testing.T) {
	for _, tool := range []string{"dtc", "fdtget", "fdtput"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (device-tree-compiler; make deps)", tool)
		}
	}
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "in.dtb"), filepath.Join(dir, "out.dtb")
	os.WriteFile(filepath.Join(dir, "in.dts"), []byte(dts), 0o644)
	if out, err := exec.Command("dtc", "-@", "-I", "dts", "-O", "dtb", "-o", src, filepath.Join(dir, "in.dts")).CombinedOutput(); err != nil {
		t.Fatalf("dtc: %v: %s", err, out)
	}
	if err := Tweak(src, dst, Options{RNGSeed: true, TestLED: true}); err != nil {
		t.Fatal(err)
	}
	get := func(args ...string) string {
		out, err := exec.Command("fdtget", append([]string{dst}, args...)...).Output()
		if err != nil {
			t.Fatalf("fdtget %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	seed := strings.Fields(get("-t", "bx", "/chosen", "rng-seed"))
	if len(seed) != 64 {
		t.Errorf("rng-seed has %d bytes, want 64", len(seed))
	}
	ph := get("/soc/gpio@7e200000", "phandle")
	if g := get("/leds/led-act", "gpios"); g != ph+" 47 0" {
		t.Errorf("led-act gpios %q, want %q", g, ph+" 47 0")
	}
	// The source stays untouched.
	if out, _ := exec.Command("fdtget", src, "/leds/led-act", "gpios").Output(); strings.Contains(string(out), " 47 ") {
		t.Error("source DTB modified")
	}
}
