package onionreq

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"

	"github.com/snodebox/snodebox/storage/testvectors"
)

// seedVectors adds every hex input of the onion vectors to the corpus.
func seedVectors(f *testing.F, prefixes ...string) {
	for _, p := range prefixes {
		vs, err := testvectors.Prefix(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, v := range vs {
			var in map[string]any
			json.Unmarshal(v.Inputs, &in)
			for _, x := range in {
				if s, ok := x.(string); ok {
					if b, err := hex.DecodeString(s); err == nil {
						f.Add(b)
					}
				}
			}
		}
	}
}

// FuzzParseEntry: the §8.2 frame parser never panics, and whatever it
// accepts survives a re-encode.
func FuzzParseEntry(f *testing.F) {
	seedVectors(f, "ls.onionreq.parser")
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(Frame([]byte("ct"), []byte(`{"ephemeral_key":"`+hex.EncodeToString(make([]byte, 32))+`","hop_no":99999999999999999999}`)))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseEntry(body)
		if err != nil {
			return
		}
		if r.HopNo < 0 || r.HopNo > MaxHops+1 {
			t.Fatalf("hop_no %d escaped its bounds", r.HopNo)
		}
		again, err := ParseEntry(r.AppendEntry())
		if err != nil || !bytes.Equal(again.Ciphertext, r.Ciphertext) || again.EphemeralKey != r.EphemeralKey || again.EncType != r.EncType {
			t.Fatalf("re-encoded request does not round-trip: %v", err)
		}
	})
}

// FuzzParsePeer: the §8.6 bt parser never panics and round-trips.
func FuzzParsePeer(f *testing.F) {
	r := Request{Ciphertext: []byte("data"), EncType: XChaCha20, HopNo: 2}
	f.Add(r.MarshalPeer())
	f.Add([]byte("d4:data0:e"))
	f.Add([]byte("le"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParsePeer(body)
		if err != nil {
			return
		}
		if r.HopNo < 1 {
			t.Fatalf("hop_no %d below 1", r.HopNo)
		}
		again, err := ParsePeer(r.MarshalPeer())
		if err != nil || !bytes.Equal(again.Ciphertext, r.Ciphertext) || again.HopNo != r.HopNo {
			t.Fatalf("peer request does not round-trip: %v", err)
		}
	})
}

// FuzzParseInner: a decrypted layer either classifies or fails with one of
// the two wire errors; a proxy URL, when built, passes the target filter.
func FuzzParseInner(f *testing.F) {
	seedVectors(f, "ss.onion_parse.")
	f.Add(Frame(nil, []byte(`{"host":"example.org","target":"/oxen/v4/lsrpc","port":8080,"protocol":"http"}`)))
	f.Add(Frame(nil, []byte(`{"headers":{},"json":true,"base64":false}`)))
	f.Fuzz(func(t *testing.T, pt []byte) {
		in, err := ParseInner(pt)
		if err != nil {
			if !isWireErr(err) {
				t.Fatalf("error %v is neither Invalid json nor Invalid url", err)
			}
			return
		}
		if in.Kind == Server {
			if u, err := in.URL(); err == nil && !TargetAllowed(in.Target) {
				t.Fatalf("URL %s built for a filtered target %q", u, in.Target)
			}
		}
	})
}

func isWireErr(err error) bool {
	return err != nil && (errors.Is(err, ErrInvalidJSON) || errors.Is(err, ErrInvalidURL))
}
