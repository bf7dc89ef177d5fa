package onionreq

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/snodebox/snodebox/storage/testvectors"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func x25519(t testing.TB, secHex string) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().NewPrivateKey(unhex(t, secHex))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func vector(t *testing.T, id string, inputs, expected any) {
	t.Helper()
	vs, err := testvectors.Prefix(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].ID != id {
		t.Fatalf("want exactly vector %s, got %d", id, len(vs))
	}
	if err := json.Unmarshal(vs[0].Inputs, inputs); err != nil {
		t.Fatalf("%s inputs: %v", id, err)
	}
	if err := json.Unmarshal(vs[0].Expected, expected); err != nil {
		t.Fatalf("%s expected: %v", id, err)
	}
}

type keyPair struct {
	ClientPub string `json:"client_eph_x25519_pub"`
	ClientSec string `json:"client_eph_x25519_sec"`
	NodePub   string `json:"node_x25519_pub"`
	NodeSec   string `json:"node_x25519_sec"`
}

// §8.1 key derivations, vector derived.onion_keys.ls_pair.
func TestKeyDerivation(t *testing.T) {
	var in keyPair
	var want map[string]string
	vector(t, "derived.onion_keys.ls_pair", &in, &want)
	node, client := x25519(t, in.NodeSec), x25519(t, in.ClientSec)
	if got := hex.EncodeToString(node.PublicKey().Bytes()); got != in.NodePub {
		t.Fatalf("node pub %s, vector %s", got, in.NodePub)
	}
	fromNode, err := SharedSecret(node, unhex(t, in.ClientPub))
	if err != nil {
		t.Fatal(err)
	}
	fromClient, err := SharedSecret(client, unhex(t, in.NodePub))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(fromNode) != want["x25519_shared_secret_hex"] || !bytes.Equal(fromNode, fromClient) {
		t.Fatalf("shared secret node %x client %x, want %s", fromNode, fromClient, want["x25519_shared_secret_hex"])
	}
	for _, tc := range []struct {
		enc EncType
		key string
	}{
		{AESGCM, "aes_gcm_key_hex(HMAC-SHA256(key='LOKI', msg=shared))"},
		{XChaCha20, "xchacha20_key_hex(BLAKE2b-256(shared||client_pub||node_pub))"},
		{AESCBC, "aes_cbc_key_hex(raw shared secret)"},
	} {
		k, err := DeriveKey(tc.enc, fromNode, unhex(t, in.ClientPub), unhex(t, in.NodePub))
		if err != nil {
			t.Fatal(err)
		}
		if want[tc.key] == "" {
			t.Fatalf("vector lacks %s", tc.key)
		}
		if got := hex.EncodeToString(k[:]); got != want[tc.key] {
			t.Errorf("%v key %s, want %s", tc.enc, got, want[tc.key])
		}
	}
}

// Deterministic ciphertexts, vector derived.onion_encrypt.fixed_nonce: the
// client side seals, the node side opens what the vector says.
func TestFixedNonceEncryption(t *testing.T) {
	var in struct {
		Nonce     string `json:"nonce_hex"`
		Plaintext string `json:"plaintext_utf8"`
	}
	var want map[string]string
	vector(t, "derived.onion_encrypt.fixed_nonce", &in, &want)
	var kp keyPair
	var ignore any
	vector(t, "derived.onion_keys.ls_pair", &kp, &ignore)
	for _, tc := range []struct {
		enc EncType
		ct  string
	}{
		{AESGCM, want["aes_gcm_ct_hex(iv=first 12 nonce bytes)"]},
		{XChaCha20, want["xchacha20_ct_hex"]},
	} {
		if tc.ct == "" {
			t.Fatalf("vector lacks %v ciphertext", tc.enc)
		}
		cc, err := ClientCipher(tc.enc, x25519(t, kp.ClientSec), unhex(t, kp.NodePub))
		if err != nil {
			t.Fatal(err)
		}
		ct, err := cc.SealNonce([]byte(in.Plaintext), unhex(t, in.Nonce))
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(ct) != tc.ct {
			t.Errorf("%v: sealed %x, want %s", tc.enc, ct, tc.ct)
		}
		nc, err := NodeCipher(tc.enc, x25519(t, kp.NodeSec), unhex(t, kp.ClientPub))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := nc.Open(unhex(t, tc.ct))
		if err != nil || string(pt) != in.Plaintext {
			t.Errorf("%v: node opened %q, %v", tc.enc, pt, err)
		}
	}
}

// Real libsession ciphertexts, vector ls.onionreq.hop_encryption.
func TestHopEncryptionVector(t *testing.T) {
	var in map[string]string
	var want struct {
		GCM         string `json:"gcm_plaintext_utf8"`
		XChaCha     string `json:"xchacha20_plaintext_utf8"`
		BrokenFails bool   `json:"broken_variants_must_fail"`
	}
	vector(t, "ls.onionreq.hop_encryption", &in, &want)
	node := x25519(t, in["node_x25519_sec"])
	client := unhex(t, in["client_eph_x25519_pub"])
	for _, tc := range []struct {
		enc    EncType
		ct     string
		want   string
		broken []string
	}{
		{AESGCM, in["enc_gcm_hex"], want.GCM, []string{in["enc_gcm_broken1_hex"], in["enc_gcm_broken2_hex"]}},
		{XChaCha20, in["enc_xchacha20_hex"], want.XChaCha, []string{in["enc_xchacha20_broken1_hex"], in["enc_xchacha20_broken2_hex"]}},
	} {
		c, err := NodeCipher(tc.enc, node, client)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := c.Open(unhex(t, tc.ct))
		if err != nil || string(pt) != tc.want {
			t.Errorf("%v: opened %q, %v; want %q", tc.enc, pt, err, tc.want)
		}
		if !want.BrokenFails {
			t.Fatal("vector no longer says broken variants fail")
		}
		for _, b := range tc.broken {
			if pt, err := c.Open(unhex(t, b)); !errors.Is(err, ErrDecrypt) {
				t.Errorf("%v: broken ciphertext opened as %q", tc.enc, pt)
			}
		}
	}
}

// Full entry requests, vector ls.onionreq.parser.
func TestEntryParserVector(t *testing.T) {
	var in map[string]string
	var want struct {
		Payload        string `json:"payload_utf8"`
		Remote         string `json:"remote_pubkey_hex"`
		ReplyLenGCM    int    `json:"reply_len_gcm_for_13_byte_plaintext"`
		ReplyLenXChaCa int    `json:"reply_len_xchacha20_for_13_byte_plaintext"`
	}
	vector(t, "ls.onionreq.parser", &in, &want)
	node := x25519(t, in["node_x25519_sec"])
	for _, tc := range []struct {
		req      string
		enc      EncType
		replyLen int
	}{
		{in["request_gcm_hex"], AESGCM, want.ReplyLenGCM},
		{in["request_xchacha20_hex"], XChaCha20, want.ReplyLenXChaCa},
	} {
		r, err := ParseEntry(unhex(t, tc.req))
		if err != nil {
			t.Fatal(err)
		}
		if r.EncType != tc.enc || hex.EncodeToString(r.EphemeralKey[:]) != want.Remote || r.HopNo != 0 {
			t.Fatalf("parsed %v key %x hop %d", r.EncType, r.EphemeralKey, r.HopNo)
		}
		c, err := NodeCipher(r.EncType, node, r.EphemeralKey[:])
		if err != nil {
			t.Fatal(err)
		}
		pt, err := c.Open(r.Ciphertext)
		if err != nil || string(pt) != want.Payload {
			t.Fatalf("%v payload %q, %v", tc.enc, pt, err)
		}
		reply, err := c.Seal([]byte("Goodbye world"))
		if err != nil {
			t.Fatal(err)
		}
		if len(reply) != tc.replyLen {
			t.Errorf("%v reply is %d bytes, want %d", tc.enc, len(reply), tc.replyLen)
		}
		// The client (ephemeral secret) reads the reply.
		cc, err := ClientCipher(tc.enc, x25519(t, in["client_eph_x25519_sec"]), unhex(t, in["node_x25519_pub"]))
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := cc.Open(reply); err != nil || string(pt) != "Goodbye world" {
			t.Errorf("%v client read reply %q, %v", tc.enc, pt, err)
		}
	}
}

// Sizes and roles, vector ss.channel_encryption.overheads.
func TestChannelEncryptionOverheads(t *testing.T) {
	var in map[string]string
	var want struct {
		CBC                  int  `json:"aes_cbc_ciphertext_len_minus_plaintext_len"`
		GCM                  int  `json:"aes_gcm_ciphertext_len_minus_plaintext_len"`
		XChaCha              int  `json:"xchacha20_ciphertext_len_minus_plaintext_len"`
		XChaChaServerNotSelf bool `json:"xchacha20_server_cannot_decrypt_server_encrypted"`
	}
	vector(t, "ss.channel_encryption.overheads", &in, &want)
	alice, bob := x25519(t, in["alice_x25519_sec"]), x25519(t, in["bob_x25519_sec"])
	pt := []byte(in["plaintext_utf8"])
	for _, tc := range []struct {
		enc      EncType
		overhead int
	}{{AESCBC, want.CBC}, {AESGCM, want.GCM}, {XChaCha20, want.XChaCha}} {
		// Alice is the node, Bob the client.
		server, err := NodeCipher(tc.enc, alice, bob.PublicKey().Bytes())
		if err != nil {
			t.Fatal(err)
		}
		client, err := ClientCipher(tc.enc, bob, alice.PublicKey().Bytes())
		if err != nil {
			t.Fatal(err)
		}
		ct, err := server.Seal(pt)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct)-len(pt) != tc.overhead {
			t.Errorf("%v overhead %d, want %d", tc.enc, len(ct)-len(pt), tc.overhead)
		}
		if got, err := client.Open(ct); err != nil || !bytes.Equal(got, pt) {
			t.Errorf("%v client open %q, %v", tc.enc, got, err)
		}
		ct, _ = client.Seal(pt)
		if got, err := server.Open(ct); err != nil || !bytes.Equal(got, pt) {
			t.Errorf("%v server open %q, %v", tc.enc, got, err)
		}
	}
	// Both sides acting as "server": the xchacha key hashes the keys in
	// role order, so Bob-as-node cannot read what Alice-as-node sealed.
	aliceNode, _ := NodeCipher(XChaCha20, alice, bob.PublicKey().Bytes())
	bobNode, _ := NodeCipher(XChaCha20, bob, alice.PublicKey().Bytes())
	ct, _ := aliceNode.Seal(pt)
	_, err := bobNode.Open(ct)
	if want.XChaChaServerNotSelf != (err != nil) {
		t.Errorf("server/server xchacha open err = %v, vector says cannot-decrypt=%v", err, want.XChaChaServerNotSelf)
	}
}

func TestCBCRejectsBadPadding(t *testing.T) {
	var k [32]byte
	c, _ := NewCipher(AESCBC, k)
	ct, _ := c.Seal([]byte("sixteen byte msg"))
	if len(ct) != 16+32 {
		t.Fatalf("full block gets a whole padding block: %d", len(ct))
	}
	// Flipping a bit of the block before the last flips the same bit of
	// the last plaintext byte: padding 16 becomes 17, always invalid.
	// (Flipping the last block itself garbles it at random, and about one
	// time in 256 the garble is valid padding.)
	badPad := append([]byte{}, ct...)
	badPad[len(badPad)-17] ^= 1
	for _, bad := range [][]byte{ct[:16], ct[:17], ct[:len(ct)-1], badPad} {
		if _, err := c.Open(bad); !errors.Is(err, ErrDecrypt) {
			t.Errorf("opened %d-byte ciphertext: %v", len(bad), err)
		}
	}
}

// Inner JSON classification, vectors ss.onion_parse.*.
func TestParseInnerVectors(t *testing.T) {
	vs, err := testvectors.Prefix("ss.onion_parse.")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 4 {
		t.Fatalf("%d onion_parse vectors, spec index says 4", len(vs))
	}
	for _, v := range vs {
		t.Run(v.ID, func(t *testing.T) {
			var in struct {
				Plaintext string `json:"plaintext_hex"`
			}
			var want struct {
				Kind       string `json:"kind"`
				Body       string `json:"body_utf8"`
				JSON       bool   `json:"json"`
				Base64     bool   `json:"base64"`
				Host       string `json:"host"`
				Target     string `json:"target"`
				Port       int    `json:"port"`
				Protocol   string `json:"protocol"`
				Ciphertext string `json:"ciphertext_utf8"`
				Next       string `json:"next_node_ed25519_hex"`
				Ephemeral  string `json:"ephemeral_key_hex"`
				EncType    string `json:"enc_type"`
			}
			if err := json.Unmarshal(v.Inputs, &in); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(v.Expected, &want); err != nil {
				t.Fatal(err)
			}
			pt := unhex(t, in.Plaintext)
			got, err := ParseInner(pt)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind.String() != want.Kind {
				t.Fatalf("kind %v, want %s", got.Kind, want.Kind)
			}
			switch got.Kind {
			case Final:
				if string(got.Blob) != want.Body || got.JSON != want.JSON || got.Base64 != want.Base64 {
					t.Errorf("final %q json=%v base64=%v", got.Blob, got.JSON, got.Base64)
				}
			case Server:
				if got.Host != want.Host || got.Target != want.Target || got.Port != want.Port || got.Protocol != want.Protocol {
					t.Errorf("server %+v", got)
				}
				if !bytes.Equal(got.Plaintext, pt) {
					t.Error("proxy payload is not the entire decrypted plaintext")
				}
			case Relay:
				if string(got.Blob) != want.Ciphertext || hex.EncodeToString(got.Destination[:]) != want.Next ||
					hex.EncodeToString(got.EphemeralKey[:]) != want.Ephemeral || got.EncType.String() != want.EncType {
					t.Errorf("relay %+v", got)
				}
			}
		})
	}
}

// URL filter, vectors ss.onion_url_filter.*.
func TestTargetFilterVectors(t *testing.T) {
	vs, err := testvectors.Prefix("ss.onion_url_filter.")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 6 {
		t.Fatalf("%d url filter vectors, spec index says 6", len(vs))
	}
	for _, v := range vs {
		var in struct{ Target string }
		var want struct{ Allowed bool }
		json.Unmarshal(v.Inputs, &in)
		json.Unmarshal(v.Expected, &want)
		if in.Target == "" {
			t.Fatalf("%s: no target", v.ID)
		}
		if got := TargetAllowed(in.Target); got != want.Allowed {
			t.Errorf("%s: %q allowed=%v, want %v", v.ID, in.Target, got, want.Allowed)
		}
		inner := Inner{Kind: Server, Host: "example.org", Target: in.Target, Port: 443, Protocol: "https"}
		if _, err := inner.URL(); (err == nil) != want.Allowed {
			t.Errorf("%s: URL() err=%v", v.ID, err)
		}
	}
}

func TestParseInnerErrors(t *testing.T) {
	frame := func(j string) []byte { return Frame([]byte("blob"), []byte(j)) }
	for _, tc := range []struct {
		name string
		pt   []byte
		want error
	}{
		{"no frame", []byte{1, 0}, ErrInvalidJSON},
		{"length past end", []byte{9, 0, 0, 0, 'a'}, ErrInvalidJSON},
		{"not json", frame("{nope"), ErrInvalidJSON},
		{"json array", frame("[1,2]"), ErrInvalidJSON},
		{"json null", frame("null"), ErrInvalidJSON},
		{"relay without destination", frame(`{"ephemeral_key":"` + strings.Repeat("00", 32) + `"}`), ErrInvalidJSON},
		{"relay short key", frame(`{"destination":"` + strings.Repeat("00", 32) + `","ephemeral_key":"00"}`), ErrInvalidJSON},
		{"relay bad enc_type", frame(`{"destination":"` + strings.Repeat("00", 32) + `","ephemeral_key":"` + strings.Repeat("00", 32) + `","enc_type":"rot13"}`), ErrInvalidJSON},
		{"final json flag not bool", frame(`{"headers":"","json":"yes"}`), ErrInvalidJSON},
		{"server without target", frame(`{"host":"h"}`), ErrInvalidJSON},
		{"server port not a number", frame(`{"host":"h","target":"/oxen/v4/lsrpc","port":"80"}`), ErrInvalidJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseInner(tc.pt); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// The "headers" key wins over everything else; "host" over relay keys.
	in, err := ParseInner(frame(`{"host":"h","target":"t","headers":{}}`))
	if err != nil || in.Kind != Final {
		t.Fatalf("headers+host: %v %v", in.Kind, err)
	}
}

func TestServerURL(t *testing.T) {
	for _, tc := range []struct {
		in   Inner
		want string
		err  error
	}{
		{Inner{Host: "example.org", Target: "/oxen/v4/lsrpc", Port: 443, Protocol: "https"}, "https://example.org/oxen/v4/lsrpc", nil},
		{Inner{Host: "example.org", Target: "/loki/v3/lsrpc", Port: 80, Protocol: "http"}, "http://example.org/loki/v3/lsrpc", nil},
		{Inner{Host: "127.0.0.1", Target: "/loki/v3/lsrpc", Port: 8080, Protocol: "http"}, "http://127.0.0.1:8080/loki/v3/lsrpc", nil},
		{Inner{Host: "::1", Target: "/loki/v3/lsrpc", Port: 8443, Protocol: "https"}, "https://[::1]:8443/loki/v3/lsrpc", nil},
		{Inner{Host: "[::1]", Target: "/loki/v3/lsrpc", Port: 443, Protocol: "https"}, "https://[::1]/loki/v3/lsrpc", nil},
		{Inner{Host: "example.org", Target: "/oxen/x/lsrpc", Port: 443, Protocol: "ftp"}, "", ErrInvalidURL},
		{Inner{Host: "user@evil", Target: "/oxen/x/lsrpc", Port: 443, Protocol: "https"}, "", ErrInvalidURL},
		{Inner{Host: "a/b", Target: "/oxen/x/lsrpc", Port: 443, Protocol: "https"}, "", ErrInvalidURL},
		{Inner{Host: "example.org", Target: "/oxen/x/lsrpc", Port: 70000, Protocol: "https"}, "", ErrInvalidURL},
	} {
		got, err := tc.in.URL()
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("%+v: %q %v, want %q %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestEntryAndPeerRoundTrip(t *testing.T) {
	r := Request{Ciphertext: []byte("ct\x00bytes"), EncType: XChaCha20, HopNo: 3}
	r.EphemeralKey[0], r.EphemeralKey[31] = 0xaa, 0x55
	for name, parse := range map[string]func([]byte) (Request, error){
		"entry": ParseEntry, "peer": ParsePeer,
	} {
		var body []byte
		if name == "entry" {
			body = r.AppendEntry()
		} else {
			body = r.MarshalPeer()
		}
		got, err := parse(body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got.Ciphertext, r.Ciphertext) || got.EphemeralKey != r.EphemeralKey || got.EncType != r.EncType || got.HopNo != r.HopNo {
			t.Errorf("%s: %+v", name, got)
		}
	}
	// Spec §8.2: hop_no absent or negative is 0; §8.6: below 1 is 1.
	ek := strings.Repeat("ab", 32)
	e, err := ParseEntry(Frame([]byte("x"), []byte(`{"ephemeral_key":"`+ek+`","hop_no":-4}`)))
	if err != nil || e.HopNo != 0 || e.EncType != AESGCM {
		t.Errorf("negative hop_no: %+v %v", e, err)
	}
	r.HopNo = 0
	p, err := ParsePeer(r.MarshalPeer())
	if err != nil || p.HopNo != 1 {
		t.Errorf("peer hop_no 0: %+v %v", p, err)
	}
}

func TestEncTypeAliases(t *testing.T) {
	for s, want := range map[string]EncType{"": AESGCM, "aes-gcm": AESGCM, "gcm": AESGCM, "xchacha20": XChaCha20,
		"xchacha20-poly1305": XChaCha20, "aes-cbc": AESCBC, "cbc": AESCBC} {
		if got, err := ParseEncType(s); err != nil || got != want {
			t.Errorf("%q: %v %v", s, got, err)
		}
	}
	if _, err := ParseEncType("AES-GCM"); err == nil {
		t.Error("enc_type names are case-sensitive on the wire")
	}
}

func TestLowOrderEphemeralKeyRejected(t *testing.T) {
	node, _ := ecdh.X25519().GenerateKey(rand.Reader)
	if _, err := NodeCipher(AESGCM, node, make([]byte, 32)); err == nil {
		t.Fatal("all-zero ephemeral key accepted (shared secret would be zero)")
	}
}

func TestOpenAppendKeepsPrefix(t *testing.T) {
	var k [32]byte
	k[0] = 7
	for _, enc := range []EncType{AESGCM, XChaCha20, AESCBC} {
		c, _ := NewCipher(enc, k)
		for _, n := range []int{0, 1, 15, 16, 17, 1000} {
			pt := bytes.Repeat([]byte{byte(n)}, n)
			ct, _ := c.Seal(pt)
			dst := make([]byte, 3, 5)
			copy(dst, "abc")
			got, err := c.OpenAppend(dst, ct)
			if err != nil || string(got[:3]) != "abc" || !bytes.Equal(got[3:], pt) {
				t.Fatalf("%v n=%d: %q %v", enc, n, got, err)
			}
		}
	}
}

// JSON escapes in key strings are still JSON: the in-place fast path and
// the exact path agree.
func TestRelayKeysWithEscapes(t *testing.T) {
	dest := strings.Repeat("ab", 32)
	escaped := `\u0061b` + strings.Repeat("ab", 31) // "ab…" with an escaped 'a'
	for _, j := range []string{
		`{"destination":"` + dest + `","ephemeral_key":"` + dest + `"}`,
		`{"destination":"` + escaped + `","ephemeral_key":"` + dest + `"}`,
	} {
		in, err := ParseInner(Frame(nil, []byte(j)))
		if err != nil || hex.EncodeToString(in.Destination[:]) != dest {
			t.Fatalf("%s: %x %v", j, in.Destination, err)
		}
	}
	for _, j := range []string{
		`{"destination":"` + strings.Repeat("zz", 32) + `","ephemeral_key":"` + dest + `"}`,
		`{"destination":` + "12" + `,"ephemeral_key":"` + dest + `"}`,
	} {
		if _, err := ParseInner(Frame(nil, []byte(j))); !errors.Is(err, ErrInvalidJSON) {
			t.Fatalf("%s: %v", j, err)
		}
	}
}

// RelayBody frames in place exactly what MarshalPeer frames by copying.
func TestRelayBodyInPlace(t *testing.T) {
	for _, enc := range []EncType{AESGCM, XChaCha20} {
		for _, n := range []int{0, 1, 9, 10, 99999, 70000} {
			blob := bytes.Repeat([]byte{0xa5}, n)
			route := `{"destination":"` + strings.Repeat("cd", 32) + `","ephemeral_key":"` + strings.Repeat("ef", 32) + `","enc_type":"` + enc.String() + `"}`
			pt := Frame(blob, []byte(route))
			full := append(make([]byte, Headroom), pt...)
			in, err := ParseInner(full[Headroom:])
			if err != nil {
				t.Fatal(err)
			}
			want := Request{Ciphertext: blob, EphemeralKey: in.EphemeralKey, EncType: enc, HopNo: 7}.MarshalPeer()
			got := RelayBody(full, in, 7)
			if !bytes.Equal(got, want) {
				t.Fatalf("%v n=%d: in-place body differs from MarshalPeer", enc, n)
			}
			prefixLen := len("d4:data:") + len(strconv.Itoa(n))
			if n > 0 && &got[0] != &full[Headroom+4-prefixLen] {
				t.Fatalf("n=%d: body was copied, not framed in place", n)
			}
			// A layer not opened with headroom falls back to copying.
			in2, _ := ParseInner(pt)
			if got := RelayBody(pt, in2, 7); !bytes.Equal(got, want) {
				t.Fatalf("%v n=%d: fallback body differs", enc, n)
			}
		}
	}
}
