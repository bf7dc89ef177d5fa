package assemble

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindRepoWalksUpToThisModule(t *testing.T) {
	repo, err := FindRepo("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(repo, "image", "debian.lock")); err != nil {
		t.Errorf("repo %s has no image/debian.lock: %v", repo, err)
	}
	deep, err := FindRepo(filepath.Join(repo, "image", "assemble"))
	if err != nil || deep != repo {
		t.Errorf("from a subdirectory: %q, %v", deep, err)
	}
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "go.mod"), []byte("module example.com/other\n"), 0o644)
	if _, err := FindRepo(other); err == nil {
		t.Error("another module's directory accepted")
	}
}

func TestBoardDTBs(t *testing.T) {
	for board, want := range map[string]string{
		"qemu-arm64": "",
		"rpi3":       "broadcom/bcm2837-rpi-3-b.dtb",
		"rpi4":       "broadcom/bcm2711-rpi-4-b.dtb",
	} {
		if got, err := BoardDTB(board); err != nil || got != want {
			t.Errorf("BoardDTB(%s) = %q, %v; want %q", board, got, err, want)
		}
	}
	if _, err := BoardDTB("rpi5"); err == nil {
		t.Error("unknown board accepted")
	}
}
