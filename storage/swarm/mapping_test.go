package swarm

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/testvectors"
)

func parseIDs(t *testing.T, ss []string) []uint64 {
	t.Helper()
	out := make([]uint64, len(ss))
	for i, s := range ss {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("swarm id %q: %v", s, err)
		}
		out[i] = v
	}
	return out
}

// Spec §6.1: the nearest swarm id wins, ties go left, across the wrap too.
func TestSwarmSelectVectors(t *testing.T) {
	vs, err := testvectors.Prefix("ss.swarm_select.")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 32 {
		t.Fatalf("want 32 swarm_select vectors, got %d", len(vs))
	}
	for _, v := range vs {
		t.Run(v.ID, func(t *testing.T) {
			var in struct {
				SwarmIDs []string `json:"swarm_ids"`
				Pubkey   string   `json:"pubkey_hex"`
			}
			var want struct {
				SwarmID string `json:"swarm_id"`
			}
			if err := json.Unmarshal(v.Inputs, &in); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(v.Expected, &want); err != nil {
				t.Fatal(err)
			}
			acct, err := storage.ParseAccount(in.Pubkey)
			if err != nil {
				t.Fatal(err)
			}
			ids := parseIDs(t, in.SwarmIDs)
			got := SwarmFor(ids, storage.Position(acct.Key))
			if strconv.FormatUint(got, 10) != want.SwarmID {
				t.Fatalf("pubkey %s → swarm %d, want %s", in.Pubkey, got, want.SwarmID)
			}
		})
	}
}

// Spec §6.1 (newer servers): a swarm owns (lower, upper], halfway to each
// neighbour; and every position in it must map back to that swarm.
func TestSwarmBoundariesVectors(t *testing.T) {
	vs, err := testvectors.Prefix("ss.swarm_boundaries.")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Run(v.ID, func(t *testing.T) {
			var in struct {
				SwarmIDs []string `json:"swarm_ids"`
				SwarmID  string   `json:"swarm_id"`
			}
			var want struct {
				Lower string `json:"lower_exclusive"`
				Upper string `json:"upper_inclusive"`
			}
			if err := json.Unmarshal(v.Inputs, &in); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(v.Expected, &want); err != nil {
				t.Fatal(err)
			}
			ids := parseIDs(t, in.SwarmIDs)
			id := parseIDs(t, []string{in.SwarmID})[0]
			lo, up := SwarmSpace(ids, id)
			if strconv.FormatUint(lo, 10) != want.Lower || strconv.FormatUint(up, 10) != want.Upper {
				t.Fatalf("space of %d = (%d, %d], want (%s, %s]", id, lo, up, want.Lower, want.Upper)
			}
			// The edges agree with SwarmFor: upper is ours, upper+1 is not,
			// lower is not, lower+1 is.
			if SwarmFor(ids, up) != id || SwarmFor(ids, lo+1) != id {
				t.Fatalf("edges of (%d, %d] do not map to %d", lo, up, id)
			}
			if SwarmFor(ids, up+1) == id || SwarmFor(ids, lo) == id {
				t.Fatalf("positions just outside (%d, %d] map to %d", lo, up, id)
			}
		})
	}
}

func TestSwarmSpaceSingleSwarmIsWholeRing(t *testing.T) {
	lo, up := SwarmSpace([]uint64{42}, 42)
	if lo != up {
		t.Fatalf("single swarm space (%d, %d], want lower == upper (whole ring)", lo, up)
	}
	for _, p := range []uint64{0, 41, 42, 43, 1 << 63, 1<<64 - 1} {
		if !storage.InRange(p, lo, up) {
			t.Fatalf("position %d outside the single swarm's space", p)
		}
	}
	if got := SwarmFor(nil, 5); got != 1<<64-1 {
		t.Fatalf("no swarms: got %d, want NoSwarm", got)
	}
}

type vecMsg struct {
	Pubkey    string `json:"pubkey_hex"`
	Hash      string `json:"hash_hex"`
	Timestamp int64  `json:"timestamp_ms"`
	Expiry    int64  `json:"expiry_ms"`
	Data      string `json:"data_hex"`
	Namespace int16  `json:"namespace"`
}

func (v vecMsg) message(t *testing.T) storage.Message {
	t.Helper()
	a, err := storage.ParseAccount(v.Pubkey)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := hex.DecodeString(v.Hash)
	d, _ := hex.DecodeString(v.Data)
	return storage.Message{Owner: a, Hash: string(h), Timestamp: v.Timestamp, Expiry: v.Expiry, Data: d, Namespace: storage.Namespace(v.Namespace)}
}

// Spec §6.5: both blob forms decode; we write the 2.11.3 form byte for byte.
func TestSerializationVectors(t *testing.T) {
	vs, err := testvectors.Prefix("ss.serialization.")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 {
		t.Fatalf("want 2 serialization vectors, got %d", len(vs))
	}
	for _, v := range vs {
		t.Run(v.ID, func(t *testing.T) {
			var in struct {
				Messages []vecMsg `json:"messages"`
			}
			var want struct {
				One string `json:"single_message_blob_hex"`
				Two string `json:"two_message_blob_hex"`
			}
			if err := json.Unmarshal(v.Inputs, &in); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(v.Expected, &want); err != nil {
				t.Fatal(err)
			}
			var msgs []storage.Message
			for _, m := range in.Messages {
				msgs = append(msgs, m.message(t))
			}
			withNS := v.ID == "ss.serialization.v1.2_11_3"
			for _, c := range []struct {
				blobHex string
				msgs    []storage.Message
			}{{want.One, msgs[:1]}, {want.Two, msgs}} {
				blob, _ := hex.DecodeString(c.blobHex)
				got, err := DecodeBlob(blob)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if len(got) != len(c.msgs) {
					t.Fatalf("decoded %d messages, want %d", len(got), len(c.msgs))
				}
				for i := range got {
					w := c.msgs[i]
					g := got[i]
					if g.Owner != w.Owner || g.Hash != w.Hash || g.Timestamp != w.Timestamp || g.Expiry != w.Expiry ||
						!bytes.Equal(g.Data, w.Data) || g.Namespace != w.Namespace {
						t.Fatalf("message %d = %+v, want %+v", i, g, w)
					}
				}
				if withNS {
					if enc := EncodeBlob(c.msgs); !bytes.Equal(enc, blob) {
						t.Fatalf("encode = %x\nwant     %x", enc, blob)
					}
				}
			}
		})
	}
}

func TestEncodeBlobsSplitsAndRoundTrips(t *testing.T) {
	var msgs []storage.Message
	for i := range 300 {
		a := storage.Account{Type: 5}
		a.Key[0] = byte(i)
		data := bytes.Repeat([]byte{byte(i)}, 1000)
		msgs = append(msgs, storage.Message{Owner: a, Namespace: storage.Namespace(i%7 - 3), Hash: storage.MessageHash(a, 0, data), Timestamp: int64(i), Expiry: int64(i) + 1000, Data: data})
	}
	blobs := EncodeBlobs(msgs, 50_000)
	if len(blobs) < 6 {
		t.Fatalf("300 KB in 50 KB blobs gave %d blobs", len(blobs))
	}
	var back []storage.Message
	for _, b := range blobs {
		if len(b) > 50_000 {
			t.Fatalf("blob of %d bytes exceeds 50,000", len(b))
		}
		ms, err := DecodeBlob(b)
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, ms...)
	}
	if len(back) != len(msgs) {
		t.Fatalf("round trip: %d messages, want %d", len(back), len(msgs))
	}
	for i := range msgs {
		if back[i].Hash != msgs[i].Hash || back[i].Namespace != msgs[i].Namespace || !bytes.Equal(back[i].Data, msgs[i].Data) {
			t.Fatalf("message %d changed in the round trip", i)
		}
		if got := len(AppendBlobMessage(nil, msgs[i])); got != EncodedSize(msgs[i]) {
			t.Fatalf("EncodedSize %d, encoded %d", EncodedSize(msgs[i]), got)
		}
	}
}

func TestDecodeBlobRejectsBadInput(t *testing.T) {
	for name, blob := range map[string][]byte{
		"empty":         {},
		"bad version":   []byte("\x02le"),
		"not a list":    []byte("\x01i3e"),
		"short message": []byte("\x01ll1:ae"),
		"bad pubkey":    []byte("\x01ll3:abc1:hi1ei2e1:dee"),
		"trailing":      []byte("\x01lexx"),
	} {
		if _, err := DecodeBlob(blob); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}
