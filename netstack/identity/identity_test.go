package identity

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/snodebox/snodebox/storage/testvectors"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Session ID = 05 + X25519(converted Ed25519 pubkey); group ID = 03 + Ed25519.
func TestSessionIDVectors(t *testing.T) {
	vs, err := testvectors.Prefix("ls.group_keys.session_ids")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		var in struct{ AdminSeedHex, MemberSeedHex, GroupSeedHex string }
		var want struct{ AdminSessionID, MemberSessionID, GroupID string }
		var rawIn map[string]string
		var rawWant map[string]string
		if err := json.Unmarshal(v.Inputs, &rawIn); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(v.Expected, &rawWant); err != nil {
			t.Fatal(err)
		}
		in.AdminSeedHex, in.MemberSeedHex, in.GroupSeedHex = rawIn["admin_seed_hex"], rawIn["member_seed_hex"], rawIn["group_seed_hex"]
		want.AdminSessionID, want.MemberSessionID, want.GroupID = rawWant["admin_session_id"], rawWant["member_session_id"], rawWant["group_id"]
		for _, c := range []struct{ seed, want string }{{in.AdminSeedHex, want.AdminSessionID}, {in.MemberSeedHex, want.MemberSessionID}} {
			k, err := FromSeed(mustHex(t, c.seed))
			if err != nil {
				t.Fatal(err)
			}
			if got := "05" + k.X25519Hex(); got != c.want {
				t.Errorf("session id from seed %s = %s, want %s", c.seed[:8], got, c.want)
			}
			// The pubkey-only conversion must agree with the secret-key path.
			x, err := EdPubToX25519(k.Ed25519Pub)
			if err != nil || hex.EncodeToString(x[:]) != c.want[2:] {
				t.Errorf("EdPubToX25519 = %x, %v; want %s", x, err, c.want[2:])
			}
		}
		g, err := FromSeed(mustHex(t, in.GroupSeedHex))
		if err != nil {
			t.Fatal(err)
		}
		if got := "03" + g.Ed25519Hex(); got != want.GroupID {
			t.Errorf("group id = %s, want %s", got, want.GroupID)
		}
	}
}

func TestEdToXVectors(t *testing.T) {
	vs, err := testvectors.Prefix("derived.ed_to_x")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		var in struct {
			Pubs []string `json:"ed25519_pubs_hex"`
		}
		var want struct {
			Pubs []string `json:"x25519_pubs_hex"`
		}
		json.Unmarshal(v.Inputs, &in)
		json.Unmarshal(v.Expected, &want)
		if len(in.Pubs) == 0 || len(in.Pubs) != len(want.Pubs) {
			t.Fatalf("%s: malformed vector", v.ID)
		}
		for i, p := range in.Pubs {
			x, err := EdPubToX25519(mustHex(t, p))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(x[:]); got != want.Pubs[i] {
				t.Errorf("%s[%d] = %s, want %s", v.ID, i, got, want.Pubs[i])
			}
		}
	}
}

func TestEdPubToX25519RejectsGarbage(t *testing.T) {
	if _, err := EdPubToX25519(make([]byte, 31)); err == nil {
		t.Error("short key accepted")
	}
	bad := mustHex(t, "0200000000000000000000000000000000000000000000000000000000000000")
	if _, err := EdPubToX25519(bad); err == nil {
		t.Error("non-point accepted")
	}
}

func TestLoadPersistsWithTightPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k1, created, err := Load(dir)
	if err != nil || !created {
		t.Fatalf("first Load: created=%v err=%v", created, err)
	}
	st, err := os.Stat(filepath.Join(dir, SeedFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("seed file mode %v, want 0600", st.Mode().Perm())
	}
	k2, created, err := Load(dir)
	if err != nil || created {
		t.Fatalf("second Load: created=%v err=%v", created, err)
	}
	if !SameKeys(k1, k2) || k1.X25519Hex() != k2.X25519Hex() {
		t.Error("identity changed across restarts")
	}
	os.WriteFile(filepath.Join(dir, SeedFile), []byte("short"), 0o600)
	if _, _, err := Load(dir); err == nil {
		t.Error("corrupt seed accepted")
	}
}

func TestCertificatesCarryIdentity(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	certs, err := k.Certificates()
	if err != nil || len(certs) != 2 {
		t.Fatalf("certs=%d err=%v", len(certs), err)
	}
	if !k.Ed25519Pub.Equal(certs[0].Leaf.PublicKey) {
		t.Error("first certificate is not for the identity key")
	}
}

func TestSnodeAddress(t *testing.T) {
	a := SnodeAddress(make([]byte, 32))
	if len(a) != 52+len(".snode") || a[:4] != "yyyy" {
		t.Errorf("address %q", a)
	}
}
