package rpcclient

import (
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/testvectors"
)

type requestSigVector struct {
	Inputs struct {
		Seed      string `json:"ed25519_seed_hex"`
		Pub       string `json:"ed25519_pub_hex"`
		SessionID string `json:"session_id(05+x25519)"`
	}
	Expected struct {
		Sigs map[string]string `json:"signature_b64_by_message"`
	}
}

func loadRequestSigs(t *testing.T) requestSigVector {
	t.Helper()
	vs, err := testvectors.Prefix("derived.request_signatures")
	if err != nil {
		t.Fatal(err)
	}
	var v requestSigVector
	if err := json.Unmarshal(vs[0].Inputs, &v.Inputs); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(vs[0].Expected, &v.Expected); err != nil {
		t.Fatal(err)
	}
	return v
}

// The builders sign exactly the strings of spec §4, so for the vector's key
// they must reproduce the vector's deterministic signatures.
func TestBuildersSignSpecStrings(t *testing.T) {
	v := loadRequestSigs(t)
	seed, _ := hex.DecodeString(v.Inputs.Seed)
	s, err := NewSession(seed)
	if err != nil {
		t.Fatal(err)
	}
	if s.Pubkey() != v.Inputs.SessionID {
		t.Fatalf("session id %s, want %s", s.Pubkey(), v.Inputs.SessionID)
	}
	const ts = 1700000000000
	hash := "XIdXUcGkRZx9FBAtaZaUyaawoHYvbXe4fks8Tst0aC0"
	cases := []struct {
		msg string
		p   Params
	}{
		{"retrieve1700000000000", s.Retrieve(RetrieveArgs{Timestamp: ts})},
		{"retrieve421700000000000", s.Retrieve(RetrieveArgs{Namespace: 42, Timestamp: ts})},
		{"store421700000000000", s.Store(StoreArgs{Namespace: 42, Timestamp: ts, TTL: 60000, Data: []byte("x")})},
		{"delete_all1700000000000", s.DeleteAll(storage.NSFilter{}, ts)},
		{"delete_allall1700000000000", s.DeleteAll(storage.NSFilter{All: true}, ts)},
		{"delete_before-101700000000000", s.DeleteBefore(storage.NSFilter{NS: -10}, ts)},
		{"expire_all1700000000000", s.ExpireAll(storage.NSFilter{}, ts)},
		{"expireextend1700000000000" + hash, s.Expire([]string{hash}, ts, ExpireExtend)},
		{"get_expiries1700000000000", s.GetExpiries(nil, ts)},
	}
	for _, c := range cases {
		want, ok := v.Expected.Sigs[c.msg]
		if !ok {
			t.Fatalf("vector has no signature for %q", c.msg)
		}
		if got := c.p["signature"]; got != want {
			t.Errorf("%s: signature %v, want %s", c.msg, got, want)
		}
		if c.p["pubkey_ed25519"] != v.Inputs.Pub {
			t.Errorf("%s: pubkey_ed25519 %v, want %s", c.msg, c.p["pubkey_ed25519"], v.Inputs.Pub)
		}
	}
}

func TestBodyIsMethodAndParams(t *testing.T) {
	var got struct {
		Method string         `json:"method"`
		Params map[string]any `json:"params"`
	}
	if err := json.Unmarshal(Body("get_swarm", GetSwarm("05ab")), &got); err != nil {
		t.Fatal(err)
	}
	if got.Method != "get_swarm" || got.Params["pubkey"] != "05ab" {
		t.Fatalf("body decoded to %+v", got)
	}
	if err := json.Unmarshal(Body("info", nil), &got); err != nil || got.Method != "info" || got.Params == nil {
		t.Fatalf("info body %+v, %v", got, err)
	}
}
