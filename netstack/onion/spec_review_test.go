package onion_test

// Independent spec review of §8: onion requests shaped the way Session
// Desktop and libsession build them, written from §8.1–§8.5 with the
// standard library and x/crypto only (no onionreq, no onionclient), sent
// over HTTPS to real in-process nodes, and their answers opened the way
// those clients open them.

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

// clientStyle is how a client builds its layers.
type clientStyle struct {
	name    string
	xchacha bool // libsession: XChaCha20-Poly1305 and "enc_type" on every layer; Desktop: AES-GCM, no enc_type
	final   string
}

var desktop = clientStyle{name: "desktop", final: `{"headers":""}`}
var libsession = clientStyle{name: "libsession", xchacha: true, final: `{"headers":{}}`}

// layerKey is §8.1 from the client's side.
type layerKey struct {
	style clientStyle
	key   [32]byte
	eph   []byte // A, the client's ephemeral public key
}

func newLayerKey(t *testing.T, style clientStyle, nodeX []byte) layerKey {
	t.Helper()
	a, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ecdh.X25519().NewPublicKey(nodeX)
	if err != nil {
		t.Fatal(err)
	}
	s, err := a.ECDH(b)
	if err != nil {
		t.Fatal(err)
	}
	lk := layerKey{style: style, eph: a.PublicKey().Bytes()}
	if style.xchacha {
		lk.key = blake2b.Sum256(append(append(append([]byte{}, s...), lk.eph...), nodeX...))
	} else {
		m := hmac.New(sha256.New, []byte("LOKI"))
		m.Write(s)
		copy(lk.key[:], m.Sum(nil))
	}
	return lk
}

func (lk layerKey) aead(t *testing.T) cipher.AEAD {
	t.Helper()
	if lk.style.xchacha {
		a, err := chacha20poly1305.NewX(lk.key[:])
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	blk, err := aes.NewCipher(lk.key[:])
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(blk)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// seal is nonce ‖ ciphertext ‖ tag, no AAD.
func (lk layerKey) seal(t *testing.T, pt []byte) []byte {
	a := lk.aead(t)
	nonce := make([]byte, a.NonceSize())
	rand.Read(nonce)
	return a.Seal(nonce, nonce, pt, nil)
}

func (lk layerKey) open(t *testing.T, ct []byte) []byte {
	t.Helper()
	a := lk.aead(t)
	if len(ct) < a.NonceSize()+a.Overhead() {
		t.Fatalf("answer of %d bytes is too short for %s", len(ct), lk.style.name)
	}
	pt, err := a.Open(nil, ct[:a.NonceSize()], ct[a.NonceSize():], nil)
	if err != nil {
		t.Fatalf("%s cannot decrypt the answer: %v", lk.style.name, err)
	}
	return pt
}

func u32frame(blob []byte, tail string) []byte {
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(blob)))
	return append(append(out, blob...), tail...)
}

// handBuilt is §8.5: the destination layer holds the RPC with finalJSON;
// each hop before it names the next; the entry wrapper carries the first
// hop's key. It returns the POST body and the destination's layer key.
func handBuilt(t *testing.T, style clientStyle, path []registry.Node, dest registry.Node, payload []byte, finalJSON string, entryExtra string) ([]byte, layerKey) {
	t.Helper()
	encType := ""
	if style.xchacha {
		encType = `,"enc_type":"xchacha20"`
	}
	dk := newLayerKey(t, style, dest.X25519[:])
	blob := dk.seal(t, u32frame(payload, finalJSON))
	next, nextEph := dest, dk.eph
	var lk layerKey
	for i := len(path) - 1; i >= 0; i-- {
		lk = newLayerKey(t, style, path[i].X25519[:])
		route := `{"destination":"` + next.Ed25519Hex() + `","ephemeral_key":"` + hex.EncodeToString(nextEph) + `"` + encType + `}`
		blob = lk.seal(t, u32frame(blob, route))
		next, nextEph = path[i], lk.eph
	}
	if len(path) == 0 {
		lk = dk
	}
	meta := `{"ephemeral_key":"` + hex.EncodeToString(lk.eph) + `"` + encType + entryExtra + `}`
	return u32frame(blob, meta), dk
}

// clientAnswer is what both clients read from a final-destination answer.
type clientAnswer struct {
	Status     int             `json:"status"`
	StatusCode int             `json:"status_code"`
	Body       json.RawMessage `json:"body"`
}

// openAnswer: base64-decode (Desktop and libsession both accept the
// base64 text), decrypt, read {"status", "body"}.
func openAnswer(t *testing.T, lk layerKey, httpStatus int, out []byte, raw bool) clientAnswer {
	t.Helper()
	if httpStatus != http.StatusOK {
		t.Fatalf("HTTP %d %q: final-destination answers travel in a 200", httpStatus, out)
	}
	ct := out
	if !raw {
		var err error
		if ct, err = base64.StdEncoding.DecodeString(string(out)); err != nil {
			t.Fatalf("answer is not standard padded base64: %v: %q", err, out)
		}
	}
	var a clientAnswer
	pt := lk.open(t, ct)
	if err := json.Unmarshal(pt, &a); err != nil {
		t.Fatalf("decrypted answer is not JSON: %v: %s", err, pt)
	}
	if a.Status == 0 && a.StatusCode == 0 {
		t.Fatalf("decrypted answer has no status: %s", pt)
	}
	return a
}

// clientBody is the answer body as clients see it: a JSON string (the
// double-encoded result, or text).
func clientBody(t *testing.T, a clientAnswer) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(a.Body, &s); err != nil {
		t.Fatalf("body %s is not a string", a.Body)
	}
	return s
}

// sessionID is a real Session ID for an Ed25519 seed: 05 ‖ X25519(ed).
func sessionID(t *testing.T, seed byte) (string, ed25519.PrivateKey) {
	s := make([]byte, 32)
	for i := range s {
		s[i] = seed
	}
	priv := ed25519.NewKeyFromSeed(s)
	p, err := new(edwards25519.Point).SetBytes(priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return "05" + hex.EncodeToString(p.BytesMontgomery()), priv
}

// A Desktop-shaped store and a libsession-shaped signed retrieve through
// entry → relay → destination; each client opens its answer its own way.
func TestSpecClientShapedOnionRequests(t *testing.T) {
	d := startDevnet(t, 3, nil)
	id, priv := sessionID(t, 77)
	data := []byte("hand-built onion, spec §8.5")
	now := time.Now().UnixMilli()
	path, dest := d.path(0, 1), d.nodes[2].Self

	store := `{"method":"store","params":{"pubkey":"` + id + `","timestamp":` + strconv.FormatInt(now, 10) +
		`,"ttl":3600000,"data":"` + base64.StdEncoding.EncodeToString(data) + `"}}`
	body, dk := handBuilt(t, desktop, path, dest, []byte(store), desktop.final, "")
	status, out := d.post(t, 0, body)
	a := openAnswer(t, dk, status, out, false)
	if a.Status != 200 {
		t.Fatalf("desktop store: %d %s", a.Status, a.Body)
	}
	var stored struct {
		Hash  string                    `json:"hash"`
		Swarm map[string]map[string]any `json:"swarm"`
		T     int64                     `json:"t"`
		HF    []int                     `json:"hf"`
	}
	if err := json.Unmarshal([]byte(clientBody(t, a)), &stored); err != nil || len(stored.Hash) != 43 || len(stored.Swarm) != 3 || stored.T == 0 || len(stored.HF) != 2 {
		t.Fatalf("desktop store result %s: %v", a.Body, err)
	}

	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte("retrieve"+ts)))
	retrieve := `{"method":"retrieve","params":{"pubkey":"` + id + `","pubkey_ed25519":"` + hex.EncodeToString(priv.Public().(ed25519.PublicKey)) +
		`","timestamp":` + ts + `,"signature":"` + sig + `","namespace":0}}`
	body, dk = handBuilt(t, libsession, path, dest, []byte(retrieve), libsession.final, "")
	status, out = d.post(t, 0, body)
	a = openAnswer(t, dk, status, out, false)
	var got struct {
		Messages []struct {
			Hash       string `json:"hash"`
			Data       string `json:"data"`
			Timestamp  int64  `json:"timestamp"`
			Expiration int64  `json:"expiration"`
		} `json:"messages"`
		More bool `json:"more"`
	}
	if a.Status != 200 || json.Unmarshal([]byte(clientBody(t, a)), &got) != nil || len(got.Messages) != 1 {
		t.Fatalf("libsession retrieve: %d %s", a.Status, a.Body)
	}
	m := got.Messages[0]
	if m.Hash != stored.Hash || m.Data != base64.StdEncoding.EncodeToString(data) || m.Timestamp != now || m.Expiration != now+3600000 || got.More {
		t.Fatalf("retrieved %+v more=%v, stored %s", m, got.More, stored.Hash)
	}
}

// §8.3, §8.4, §8.6 on real nodes: which failures are plain HTTP, which
// are encrypted inside a 200, and the final-destination flags.
func TestSpecOnionErrorMatrix(t *testing.T) {
	d := startDevnet(t, 3, nil)
	info := []byte(`{"method":"info","params":{}}`)
	path, dest := d.path(0, 1), d.nodes[2].Self
	for _, style := range []clientStyle{desktop, libsession} {
		t.Run(style.name, func(t *testing.T) {
			t.Run("result double-encoded by default", func(t *testing.T) {
				body, dk := handBuilt(t, style, path, dest, info, style.final, "")
				status, out := d.post(t, 0, body)
				a := openAnswer(t, dk, status, out, false)
				var res struct {
					Version []int `json:"version"`
				}
				if a.Status != 200 || json.Unmarshal([]byte(clientBody(t, a)), &res) != nil || len(res.Version) != 3 {
					t.Fatalf("%d %s", a.Status, a.Body)
				}
			})
			t.Run(`"json": true embeds the object`, func(t *testing.T) {
				body, dk := handBuilt(t, style, path, dest, info, `{"headers":"","json":true}`, "")
				status, out := d.post(t, 0, body)
				a := openAnswer(t, dk, status, out, false)
				if a.Status != 200 || !strings.HasPrefix(string(a.Body), `{`) {
					t.Fatalf("%d body %s, want an object", a.Status, a.Body)
				}
			})
			t.Run(`"base64": false returns raw ciphertext`, func(t *testing.T) {
				body, dk := handBuilt(t, style, path, dest, info, `{"headers":"","base64":false}`, "")
				status, out := d.post(t, 0, body)
				if a := openAnswer(t, dk, status, out, true); a.Status != 200 {
					t.Fatalf("%d %s", a.Status, a.Body)
				}
			})
			t.Run("RPC errors travel as their status and text", func(t *testing.T) {
				body, dk := handBuilt(t, style, path, dest, []byte(`{"method":"nope","params":{}}`), style.final, "")
				status, out := d.post(t, 0, body)
				if a := openAnswer(t, dk, status, out, false); a.Status != 400 || clientBody(t, a) != "no method nope" {
					t.Fatalf("%d %s", a.Status, a.Body)
				}
			})
			t.Run("binary results are base64 in the body", func(t *testing.T) {
				body, dk := handBuilt(t, style, path, dest, []byte(`{"method":"active_nodes_bin","params":{}}`), style.final, "")
				status, out := d.post(t, 0, body)
				a := openAnswer(t, dk, status, out, false)
				bin, err := base64.StdEncoding.DecodeString(clientBody(t, a))
				if a.Status != 200 || err != nil || len(bin) != 3*51 {
					t.Fatalf("%d %s (%v, %d bytes)", a.Status, a.Body, err, len(bin))
				}
			})
			t.Run("inner JSON that is no object: encrypted 400 Invalid json", func(t *testing.T) {
				body, dk := handBuilt(t, style, path, dest, info, `["headers"]`, "")
				status, out := d.post(t, 0, body)
				if a := openAnswer(t, dk, status, out, false); a.Status != 400 || clientBody(t, a) != "Invalid json" {
					t.Fatalf("%d %s", a.Status, a.Body)
				}
			})
			t.Run("proxy target outside /loki|/oxen …/lsrpc: encrypted 400 Invalid url", func(t *testing.T) {
				body, dk := handBuilt(t, style, path, dest, []byte("x"), `{"host":"example.org","target":"/oxen/v4/lsrpc?x=1","method":"POST"}`, "")
				status, out := d.post(t, 0, body)
				if a := openAnswer(t, dk, status, out, false); a.Status != 400 || clientBody(t, a) != "Invalid url" {
					t.Fatalf("%d %s", a.Status, a.Body)
				}
			})
			t.Run("undecryptable layer: plain 400 Invalid ciphertext", func(t *testing.T) {
				body, _ := handBuilt(t, style, path, dest, info, style.final, "")
				body[4+20] ^= 1 // inside the first hop's ciphertext
				status, out := d.post(t, 0, body)
				if status != 400 || string(out) != "Invalid ciphertext" {
					t.Fatalf("%d %q", status, out)
				}
			})
			t.Run("unknown next node: plain 502 Next node not found", func(t *testing.T) {
				ghost := dest
				ghost.Ed25519[0] ^= 0xff
				body, _ := handBuilt(t, style, path, ghost, info, style.final, "")
				status, out := d.post(t, 0, body)
				if status != http.StatusBadGateway || string(out) != "Next node not found: "+ghost.Ed25519Hex() {
					t.Fatalf("%d %q", status, out)
				}
			})
			t.Run("entry hop_no 14 reaches the destination as 16: plain 400", func(t *testing.T) {
				body, _ := handBuilt(t, style, path, dest, info, style.final, `,"hop_no":14`)
				status, out := d.post(t, 0, body)
				if status != 400 || string(out) != "onion request max path length exceeded" {
					t.Fatalf("%d %q", status, out)
				}
			})
			t.Run("entry hop_no 13 reaches the destination as 15", func(t *testing.T) {
				body, dk := handBuilt(t, style, path, dest, info, style.final, `,"hop_no":13`)
				status, out := d.post(t, 0, body)
				if a := openAnswer(t, dk, status, out, false); a.Status != 200 {
					t.Fatalf("%d %s", a.Status, a.Body)
				}
			})
			t.Run("negative entry hop_no counts as 0", func(t *testing.T) {
				body, dk := handBuilt(t, style, path, dest, info, style.final, `,"hop_no":-40`)
				status, out := d.post(t, 0, body)
				if a := openAnswer(t, dk, status, out, false); a.Status != 200 {
					t.Fatalf("%d %s", a.Status, a.Body)
				}
			})
			t.Run("the entry node as final destination", func(t *testing.T) {
				body, dk := handBuilt(t, style, nil, d.nodes[0].Self, info, style.final, "")
				status, out := d.post(t, 0, body)
				if a := openAnswer(t, dk, status, out, false); a.Status != 200 {
					t.Fatalf("%d %s", a.Status, a.Body)
				}
			})
		})
	}
}

// §8.6: a hop from another node with hop_no < 1 (or none) counts as hop 1,
// and the sender increments: the next node is told hop 2.
func TestSpecPeerHopNumbers(t *testing.T) {
	for _, c := range []struct {
		name   string
		hopKey string // bt "hop_no" entry, "" = absent
		want   int64
	}{
		{"absent", "", 2},
		{"zero", "6:hop_noi0e", 2},
		{"negative", "6:hop_noi-7e", 2},
		{"one", "6:hop_noi1e", 2},
		{"nine", "6:hop_noi9e", 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			tn := newNet(t, 2, nil)
			got := make(chan int64, 1)
			tn.nodes[1].ep.Handle(peer.CmdOnionRequest, func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
				v, err := bencode.Unmarshal(body)
				d, _ := v.(map[string]any)
				hop, _ := d["hop_no"].(int64)
				if err != nil {
					hop = -1000
				}
				got <- hop
				return peer.Reply{Status: 200, Body: []byte("relayed")}
			})
			lk := newLayerKey(t, desktop, tn.nodes[0].rec.X25519[:])
			next := make([]byte, 32)
			route := `{"destination":"` + tn.nodes[1].rec.Ed25519Hex() + `","ephemeral_key":"` + hex.EncodeToString(next) + `"}`
			ct := lk.seal(t, u32frame([]byte("next layer"), route))
			body := "d4:data" + strconv.Itoa(len(ct)) + ":" + string(ct) + "8:enc_type7:aes-gcm13:ephemeral_key32:" + string(lk.eph) + c.hopKey + "e"
			r := tn.nodes[0].h.HandlePeer(context.Background(), nil, []byte(body))
			if r.Status != 200 || string(r.Body) != "relayed" {
				t.Fatalf("%d %q", r.Status, r.Body)
			}
			if h := <-got; h != c.want {
				t.Fatalf("next node told hop_no %d, want %d", h, c.want)
			}
		})
	}
}
