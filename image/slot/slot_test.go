package slot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBootStateRoundTripAndUBootExport(t *testing.T) {
	// What U-Boot's `env export -t` wrote on a QEMU boot: sorted lines and
	// a trailing NUL.
	uboot := []byte("BOOT_A_LEFT=2\nBOOT_B_LEFT=0\nBOOT_ORDER=A B\n\x00")
	bs, err := Parse(uboot)
	if err != nil {
		t.Fatal(err)
	}
	if bs.First() != "A" || bs.Left["A"] != 2 || bs.Left["B"] != 0 {
		t.Fatalf("parsed %s", bs)
	}
	if got := string(bs.Marshal()); got != strings.TrimSuffix(string(uboot), "\x00") {
		t.Errorf("Marshal = %q, want U-Boot's own format %q", got, uboot)
	}
	for _, bad := range []string{"BOOT_ORDER=A A\n", "BOOT_ORDER=C B\n", "BOOT_A_LEFT=x\n", "BOOT_A_LEFT=10\n", "garbage\n"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if bs, err := Parse([]byte("BOOT_SOMETHING_NEW=1\n")); err != nil || bs.First() != "A" || bs.Left["A"] != MaxAttempts {
		t.Errorf("unknown names: %s, %v; want the defaults", bs, err)
	}
}

// The scheme's transitions, as the boot script and snoded make them.
func TestBootStateTransitions(t *testing.T) {
	bs := Default()
	s, after, counted := bs.Next()
	if s != "A" || !counted || after.Left["A"] != MaxAttempts-1 {
		t.Fatalf("fresh card boots %s counted=%v leaving %s", s, counted, after)
	}
	if bs.Left["A"] != MaxAttempts {
		t.Fatal("Next changed its receiver")
	}
	if st := bs.State("B", true); st != StateEmpty {
		t.Errorf("fresh B is %s, want empty", st)
	}
	// An update writes B and selects it.
	bs.SetTrial("B")
	if bs.State("B", false) != StateTrying {
		t.Errorf("selected B is %s, want trying", bs.State("B", false))
	}
	for i := 0; i < TrialAttempts; i++ {
		s, bs, _ = bs.Next()
		if s != "B" {
			t.Fatalf("attempt %d boots %s, want B", i+1, s)
		}
	}
	// B used every attempt without marking itself good: A boots.
	s, bs, counted = bs.Next()
	if s != "A" || !counted {
		t.Fatalf("after B's attempts: boots %s", s)
	}
	from, ok := bs.RolledBack("A")
	if !ok || from != "B" {
		t.Fatalf("RolledBack(A) = %s, %v; want B", from, ok)
	}
	bs.MarkBad("B")
	bs.MarkGood("A")
	if bs.First() != "A" || bs.State("B", false) != StateBad || bs.Left["A"] != MaxAttempts {
		t.Errorf("after rollback: %s, B %s", bs, bs.State("B", false))
	}
	if _, ok := bs.RolledBack("A"); ok {
		t.Error("a marked-bad B still reads as a rollback")
	}
	// A good trial: B commits and A stays the good fallback.
	bs.SetTrial("B")
	s, bs, _ = bs.Next()
	bs.MarkGood(s)
	if s != "B" || bs.State("A", false) != StateGood {
		t.Errorf("after B committed: %s, A %s", bs, bs.State("A", false))
	}
	// No attempts anywhere: the first slot boots uncounted.
	none := BootState{Order: []string{"B", "A"}, Left: map[string]int{"A": 0, "B": 0}}
	if s, _, counted := none.Next(); s != "B" || counted {
		t.Errorf("no attempts left: boots %s counted=%v, want B uncounted", s, counted)
	}
}

func TestManifest(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, KernelFile), []byte("kernel"), 0o644)
	os.MkdirAll(filepath.Join(dir, DTBDir, "broadcom"), 0o755)
	os.WriteFile(filepath.Join(dir, DTBDir, "broadcom", "x.dtb"), []byte("dtb"), 0o644)
	m, err := NewManifest(dir, "v1", "rpi4", "6.1")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, ManifestFile), m.Marshal(), 0o644)
	got, err := ReadManifest(dir)
	if err != nil || got.BuildID != m.BuildID || len(got.Files) != 2 {
		t.Fatalf("read back %+v, %v", got, err)
	}
	if err := got.Verify(dir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, KernelFile), []byte("kernel!"), 0o644)
	if err := got.Verify(dir); err == nil || !strings.Contains(err.Error(), KernelFile) {
		t.Errorf("Verify after a change: %v", err)
	}
	got.Files[0].SHA256 = strings.Repeat("0", 64)
	if _, err := ParseManifest(got.Marshal()); err == nil || !strings.Contains(err.Error(), "build id") {
		t.Errorf("a manifest whose files changed under its build id: %v", err)
	}
}

func TestBootScriptFollowsTheContract(t *testing.T) {
	for board, b := range Boards {
		s, err := BootScript(board)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"load ${devtype} ${devnum}:1 ${scriptaddr} bootstate.txt",
			"env import -t ${scriptaddr} ${filesize} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT",
			"setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1", "setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1",
			"fatwrite ${devtype} ${devnum}:1 ${scriptaddr} bootstate.txt ${filesize}",
			"snode.slot=${snode_slot}", "panic=5", b.Console,
			"booti ${kernel_addr_r} ${snode_initrd} ${snode_fdt}",
			"setenv snode_part 3", "setenv snode_part 2",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("%s boot script lacks %q", board, want)
			}
		}
		// The count is saved before the kernel is loaded.
		if strings.Index(s, "fatwrite") > strings.Index(s, "booti ${") {
			t.Errorf("%s: the attempt is saved after booti", board)
		}
		if b.FirmwareFDT != strings.Contains(s, "${fdt_addr}") {
			t.Errorf("%s: firmware device tree use does not match the board", board)
		}
	}
	if _, err := BootScript("pdp11"); err == nil {
		t.Error("unknown board accepted")
	}
}
