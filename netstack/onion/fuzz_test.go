package onion_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/snodebox/snodebox/netstack/onion"
	"github.com/snodebox/snodebox/netstack/onion/onionreq"
	"github.com/snodebox/snodebox/storage/testvectors"
)

func fuzzNet(f *testing.F) *testNet {
	tn := newNet(f, 2, nil)
	for _, n := range tn.nodes {
		onion.OfflineProxy(n.h)
	}
	return tn
}

var entryStatuses = map[int]bool{200: true, 400: true, 413: true, 502: true, 503: true, 504: true}

// FuzzEntry: any body on /onion_req/v2 gets an answer from the documented
// set, and the node keeps serving (a good request still works afterwards).
func FuzzEntry(f *testing.F) {
	tn := fuzzNet(f)
	vs, err := testvectors.Prefix("ls.onionreq.parser")
	if err != nil {
		f.Fatal(err)
	}
	var in map[string]string
	json.Unmarshal(vs[0].Inputs, &in)
	for _, k := range []string{"request_gcm_hex", "request_xchacha20_hex"} {
		b, _ := hex.DecodeString(in[k])
		f.Add(b)
	}
	good, _ := build(f, tn.path(0, 1), onionSpec{enc: onionreq.AESGCM, payload: []byte(`{"method":"info"}`), tamperAt: -1})
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		status, out := tn.post(0, body)
		if !entryStatuses[status] {
			t.Fatalf("status %d (%q) outside the documented set", status, out)
		}
		again, _ := build(t, tn.path(0), onionSpec{enc: onionreq.XChaCha20, payload: []byte(`{}`), tamperAt: -1})
		if s, _ := tn.post(0, again); s != http.StatusOK {
			t.Fatalf("node stopped serving after %q: %d", body, s)
		}
	})
}

// FuzzLayer: any decrypted layer content (the inner-JSON handling of §8.3)
// is answered either plainly by the path or sealed for the sender.
func FuzzLayer(f *testing.F) {
	tn := fuzzNet(f)
	vs, err := testvectors.Prefix("ss.onion_parse.")
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range vs {
		var in struct {
			Plaintext string `json:"plaintext_hex"`
		}
		json.Unmarshal(v.Inputs, &in)
		b, _ := hex.DecodeString(in.Plaintext)
		f.Add(b)
	}
	dest := hex.EncodeToString(tn.nodes[1].rec.Ed25519[:])
	f.Add(onionreq.Frame([]byte("x"), []byte(`{"destination":"`+dest+`","ephemeral_key":"`+strings.Repeat("42", 32)+`"}`)))
	f.Add(onionreq.Frame([]byte(`{"method":"info"}`), []byte(`{"headers":"","json":true,"base64":false}`)))
	f.Add(onionreq.Frame(nil, []byte(`{"host":"example.org","target":"/oxen/v4/lsrpc","port":1,"protocol":"http"}`)))
	f.Fuzz(func(t *testing.T, pt []byte) {
		priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
		c, err := onionreq.ClientCipher(onionreq.AESGCM, priv, tn.nodes[0].rec.X25519[:])
		if err != nil {
			t.Fatal(err)
		}
		ct, _ := c.Seal(pt)
		req := onionreq.Request{Ciphertext: ct, EncType: onionreq.AESGCM}
		copy(req.EphemeralKey[:], priv.PublicKey().Bytes())
		status, out := tn.post(0, req.AppendEntry())
		if !entryStatuses[status] {
			t.Fatalf("status %d (%q)", status, out)
		}
		if status != http.StatusOK {
			return
		}
		// 200 from a relay is the next hop's (which cannot open a random
		// layer: 400); so a 200 here is our own sealed answer.
		raw := out
		if b, err := base64.StdEncoding.DecodeString(string(out)); err == nil {
			raw = b
		}
		ans, err := c.Open(raw)
		if err != nil {
			t.Fatalf("200 answer %q is not sealed for the sender", out)
		}
		var a struct {
			Status *int            `json:"status"`
			Body   json.RawMessage `json:"body"`
		}
		if json.Unmarshal(ans, &a) != nil || a.Status == nil || !bytes.HasPrefix(bytes.TrimSpace(ans), []byte("{")) {
			t.Fatalf("sealed answer %q is not {status, body}", ans)
		}
	})
}
