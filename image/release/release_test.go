package release

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"aead.dev/minisign"

	"github.com/snodebox/snodebox/image/slot"
)

func testManifest() Manifest {
	return Manifest{Format: 1, Version: "v2", RollbackIndex: 2, Board: "rpi4", MinUpdater: 1,
		Slot:     slot.Manifest{Version: "v2", Board: "rpi4", BuildID: strings.Repeat("1", 64), Files: []slot.File{{Name: "Image", Size: 1, SHA256: strings.Repeat("2", 64)}}},
		Payloads: []Payload{{Name: SlotImageFile, Kind: KindSlotImage, Size: 10, SHA256: strings.Repeat("3", 64)}}}
}

// The standard minisign tool reads our keys and signatures, and we read
// its: a user can check a release by hand, and sign one with minisign.
func TestMinisignToolInterop(t *testing.T) {
	if _, err := exec.LookPath("minisign"); err != nil {
		t.Fatal("minisign not installed (Debian package minisign; make deps)")
	}
	dir := t.TempDir()
	for _, pw := range []string{"", "correct horse"} {
		kd := filepath.Join(dir, "k"+pw[:min(len(pw), 1)])
		pub, err := Keygen(kd, pw)
		if err != nil {
			t.Fatal(err)
		}
		k, err := LoadSecretKey(filepath.Join(kd, SecretKeyFile), func() (string, error) { return pw, nil })
		if err != nil {
			t.Fatal(err)
		}
		if !PublicOf(k).Equal(pub) {
			t.Fatal("secret key's public half differs from the .pub")
		}
		m := testManifest()
		rd := filepath.Join(dir, "rel"+pw[:min(len(pw), 1)])
		os.MkdirAll(rd, 0o755)
		if err := WriteSigned(rd, m, k); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("minisign", "-Vm", filepath.Join(rd, ManifestFile), "-p", filepath.Join(kd, PublicKeyFile)).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "snodebox v2 for rpi4, rollback index 2") {
			t.Fatalf("minisign -V: %v\n%s", err, out)
		}
		if pw == "" {
			// minisign signs with our unencrypted secret key; we verify.
			msg := filepath.Join(dir, "msg")
			os.WriteFile(msg, []byte("hello"), 0o644)
			if out, err := exec.Command("minisign", "-S", "-s", filepath.Join(kd, SecretKeyFile), "-m", msg).CombinedOutput(); err != nil {
				t.Fatalf("minisign -S: %v\n%s", err, out)
			}
			sig, _ := os.ReadFile(msg + ".minisig")
			if _, err := Verify([]minisign.PublicKey{pub}, []byte("hello"), sig); err != nil {
				t.Fatalf("verify minisign's signature: %v", err)
			}
		}
	}
	if _, err := LoadSecretKey(filepath.Join(dir, "kc", SecretKeyFile), func() (string, error) { return "wrong", nil }); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := Keygen(filepath.Join(dir, "k"), ""); err == nil {
		t.Error("keygen overwrote an existing key")
	}
}

func TestVerifyTellsUnknownKeyFromBadSignature(t *testing.T) {
	dir := t.TempDir()
	Keygen(filepath.Join(dir, "a"), "")
	Keygen(filepath.Join(dir, "b"), "")
	ka, _ := LoadSecretKey(filepath.Join(dir, "a", SecretKeyFile), nil)
	kb, _ := LoadSecretKey(filepath.Join(dir, "b", SecretKeyFile), nil)
	m := testManifest()
	data := m.Marshal()
	sig := Sign(ka, data, m)
	if _, err := Verify([]minisign.PublicKey{PublicOf(kb), PublicOf(ka)}, data, sig); err != nil {
		t.Fatalf("rotation: a second trusted key: %v", err)
	}
	if _, err := Verify([]minisign.PublicKey{PublicOf(kb)}, data, sig); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("other key: %v, want ErrUnknownKey", err)
	}
	tampered := []byte(strings.Replace(string(data), `"v2"`, `"v3"`, 1))
	if _, err := Verify([]minisign.PublicKey{PublicOf(ka)}, tampered, sig); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered manifest: %v, want ErrBadSignature", err)
	}
	keys, err := ParsePublicKeys(KeysText([]minisign.PublicKey{PublicOf(ka), PublicOf(kb), PublicOf(ka)}))
	if err != nil || len(keys) != 2 {
		t.Errorf("key list round trip: %d keys, %v", len(keys), err)
	}
	if _, err := ParsePublicKeys([]byte("not a key\n")); err == nil {
		t.Error("garbage accepted as a key")
	}
}

func TestParseManifestIsStrict(t *testing.T) {
	good := testManifest().Marshal()
	if _, err := ParseManifest(good); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(string) string{
		"unknown field": func(s string) string { return strings.Replace(s, `"format": 1,`, `"format": 1, "surprise": true,`, 1) },
		"format 2":      func(s string) string { return strings.Replace(s, `"format": 1`, `"format": 2`, 1) },
		"path payload": func(s string) string {
			return strings.Replace(s, `"name": "slot.img"`, `"name": "../../etc/passwd"`, 1)
		},
		"no board": func(s string) string { return strings.Replace(s, `"board": "rpi4",`, `"board": "",`, 1) },
	} {
		if _, err := ParseManifest([]byte(edit(string(good)))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
