package storage

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/snodebox/snodebox/storage/testvectors"
)

func TestMessageHashVectors(t *testing.T) {
	vs, err := testvectors.Category("message_hash")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Run(v.ID, func(t *testing.T) {
			var in struct {
				Pubkey    string `json:"pubkey_hex"`
				Namespace int    `json:"namespace"`
				Data      string `json:"data_hex"`
			}
			var want struct{ Hash string }
			if err := json.Unmarshal(v.Inputs, &in); err != nil {
				t.Fatal(err)
			}
			json.Unmarshal(v.Expected, &want)
			a, err := ParseAccount(in.Pubkey)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := hex.DecodeString(in.Data)
			got := MessageHash(a, Namespace(in.Namespace), data)
			if got != want.Hash {
				t.Errorf("hash = %s, want %s", got, want.Hash)
			}
			if !ValidHash(got) {
				t.Errorf("ValidHash(%s) = false", got)
			}
		})
	}
}

func TestPositionVectors(t *testing.T) {
	vs, err := testvectors.Category("swarm_space")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		var in struct {
			Pubkey string `json:"pubkey_hex"`
		}
		var want struct {
			Pos string `json:"swarm_space_u64"`
		}
		json.Unmarshal(v.Inputs, &in)
		json.Unmarshal(v.Expected, &want)
		a, err := ParseAccount(in.Pubkey)
		if err != nil {
			t.Fatalf("%s: %v", v.ID, err)
		}
		wantPos, _ := strconv.ParseUint(want.Pos, 10, 64)
		if got := Position(a.Key); got != wantPos {
			t.Errorf("%s: Position = %d, want %d", v.ID, got, wantPos)
		}
	}
}

func TestNamespaceRules(t *testing.T) {
	cases := []struct {
		ns                                         Namespace
		inbox, outbox, noAuthRetrieve, unrevocable bool
		sig                                        string
	}{
		{0, true, false, false, false, ""},
		{10, true, false, false, false, "10"},
		{-30, true, false, false, false, "-30"},
		{-10, true, false, true, false, "-10"},
		{-1, false, true, true, false, "-1"},
		{-21, false, true, true, false, "-21"},
		{-11, false, false, false, true, "-11"},
		{-111, false, false, false, true, "-111"},
		{2, false, false, false, false, "2"},
		{42, false, false, false, false, "42"},
	}
	for _, c := range cases {
		if c.ns.PublicInbox() != c.inbox || c.ns.PublicOutbox() != c.outbox ||
			c.ns.NoAuthRetrieve() != c.noAuthRetrieve || c.ns.Unrevocable() != c.unrevocable || c.ns.SigString() != c.sig {
			t.Errorf("namespace %d rules wrong", c.ns)
		}
	}
}

func TestInRange(t *testing.T) {
	if !InRange(5, 5, 5) || InRange(5, 5, 10) || !InRange(10, 5, 10) || !InRange(1, 10, 5) || InRange(7, 10, 5) {
		t.Error("ring range rules wrong")
	}
}

func TestParseAccountErrors(t *testing.T) {
	for _, s := range []string{"", "05", "zz" + string(make([]byte, 64))} {
		if _, err := ParseAccount(s); err == nil {
			t.Errorf("ParseAccount(%q) accepted", s)
		}
	}
}
