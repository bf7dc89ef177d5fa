package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"math/big"
	"testing"
)

// Sign makes crypto/ed25519's signatures byte for byte, and Verify
// accepts and refuses exactly what crypto/ed25519.Verify does: good
// signatures, flipped bits anywhere, the wrong message or key, a
// non-canonical S (S+L: the same point, refused by the standard library),
// an all-zero key and signature, and wrong lengths.
func TestEd25519MatchesStandardLibrary(t *testing.T) {
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	for i := range 64 {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, i*7)
		rand.Read(msg)
		sig := Sign(priv, msg)
		if want := ed25519.Sign(priv, msg); !bytes.Equal(sig, want) {
			t.Fatalf("signature %d differs from crypto/ed25519's", i)
		}
		cases := map[string][3][]byte{"good": {pub, msg, sig}}
		for _, bit := range []int{0, 7, 255, 256, 300, 511} {
			bad := bytes.Clone(sig)
			bad[bit/8] ^= 1 << (bit % 8)
			cases[fmt.Sprintf("sig bit %d", bit)] = [3][]byte{pub, msg, bad}
		}
		other := append(bytes.Clone(msg), 0)
		cases["other message"] = [3][]byte{pub, other, sig}
		badPub := bytes.Clone(pub)
		badPub[3] ^= 4
		cases["other key"] = [3][]byte{badPub, msg, sig}
		// S + L, little-endian, when it still fits in 32 bytes.
		s := new(big.Int).SetBytes(reverse(sig[32:]))
		s.Add(s, l)
		if b := s.Bytes(); len(b) <= 32 {
			nc := bytes.Clone(sig)
			copy(nc[32:], reverse(append(make([]byte, 32-len(b)), b...)))
			cases["non-canonical S"] = [3][]byte{pub, msg, nc}
		}
		cases["zero key and signature"] = [3][]byte{make([]byte, 32), msg, make([]byte, 64)}
		cases["short signature"] = [3][]byte{pub, msg, sig[:63]}
		cases["short key"] = [3][]byte{pub[:31], msg, sig}
		for name, c := range cases {
			want := len(c[0]) == ed25519.PublicKeySize && ed25519.Verify(c[0], c[1], c[2])
			if got := Verify(c[0], c[1], c[2]); got != want {
				t.Errorf("key %d, %s: Verify = %v, crypto/ed25519 says %v", i, name, got, want)
			}
		}
		if !Verify(pub, msg, sig) {
			t.Errorf("key %d: a good signature was refused", i)
		}
	}
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[len(b)-1-i] = c
	}
	return out
}
