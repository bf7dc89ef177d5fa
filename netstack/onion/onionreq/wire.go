package onionreq

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/snodebox/snodebox/netstack/bencode"
)

// MaxHops is the longest path a node relays (spec §8.6, §12).
const MaxHops = 15

// Frame returns u32_LE(len(blob)) ‖ blob ‖ tail: the entry request of spec
// §8.2 and every decrypted layer of §8.3 share it.
func Frame(blob, tail []byte) []byte {
	out := make([]byte, 4, 4+len(blob)+len(tail))
	binary.LittleEndian.PutUint32(out, uint32(len(blob)))
	out = append(out, blob...)
	return append(out, tail...)
}

// SplitFrame is the inverse of Frame. blob and tail alias data.
func SplitFrame(data []byte) (blob, tail []byte, err error) {
	if len(data) < 4 {
		return nil, nil, fmt.Errorf("onion frame of %d bytes has no length prefix", len(data))
	}
	n := uint64(binary.LittleEndian.Uint32(data))
	if n > uint64(len(data)-4) {
		return nil, nil, fmt.Errorf("onion frame claims %d bytes, has %d", n, len(data)-4)
	}
	return data[4 : 4+n], data[4+n:], nil
}

// Request is one layer in transit: the ciphertext for the receiving hop and
// the key material to open it.
type Request struct {
	Ciphertext   []byte
	EphemeralKey [32]byte
	EncType      EncType
	HopNo        int
}

// ParseEntry reads the body of POST /onion_req/v2 (spec §8.2).
func ParseEntry(body []byte) (Request, error) {
	ct, tail, err := SplitFrame(body)
	if err != nil {
		return Request{}, err
	}
	var meta map[string]json.RawMessage
	if err := json.Unmarshal(tail, &meta); err != nil {
		return Request{}, fmt.Errorf("onion request metadata: %w", err)
	}
	r := Request{Ciphertext: ct}
	var ek string
	if err := field(meta, "ephemeral_key", &ek, true); err != nil {
		return Request{}, err
	}
	if r.EphemeralKey, err = hexKey(ek); err != nil {
		return Request{}, fmt.Errorf("ephemeral_key: %w", err)
	}
	var et string
	if err := field(meta, "enc_type", &et, false); err != nil {
		return Request{}, err
	}
	if r.EncType, err = ParseEncType(et); err != nil {
		return Request{}, err
	}
	var hop int64
	if err := field(meta, "hop_no", &hop, false); err != nil {
		return Request{}, err
	}
	r.HopNo = int(max(0, min(hop, MaxHops+1)))
	return r, nil
}

// AppendEntry is the body of POST /onion_req/v2 for r (clients).
func (r Request) AppendEntry() []byte {
	meta, _ := json.Marshal(struct {
		EphemeralKey string `json:"ephemeral_key"`
		EncType      string `json:"enc_type"`
		HopNo        int    `json:"hop_no,omitempty"`
	}{hex.EncodeToString(r.EphemeralKey[:]), r.EncType.String(), r.HopNo})
	return Frame(r.Ciphertext, meta)
}

// ParsePeer reads the body of the sn.onion_request peer command (spec §8.6):
// a bt dict {data, enc_type, ephemeral_key (32 raw bytes), hop_no}.
func ParsePeer(body []byte) (Request, error) {
	v, err := bencode.Unmarshal(body)
	if err != nil {
		return Request{}, fmt.Errorf("onion hop: %w", err)
	}
	d, err := bencode.AsDict(v)
	if err != nil {
		return Request{}, fmt.Errorf("onion hop: %w", err)
	}
	var r Request
	data, ok, err := d.Bytes("data")
	if err != nil || !ok {
		return Request{}, fmt.Errorf("onion hop: data missing or not a string")
	}
	r.Ciphertext = data
	ek, ok, err := d.Bytes("ephemeral_key")
	if err != nil || !ok || len(ek) != 32 {
		return Request{}, fmt.Errorf("onion hop: ephemeral_key missing or not 32 bytes")
	}
	copy(r.EphemeralKey[:], ek)
	et, _, err := d.Bytes("enc_type")
	if err != nil {
		return Request{}, fmt.Errorf("onion hop: %w", err)
	}
	if r.EncType, err = ParseEncType(string(et)); err != nil {
		return Request{}, fmt.Errorf("onion hop: %w", err)
	}
	hop, _, err := d.Int("hop_no")
	if err != nil {
		return Request{}, fmt.Errorf("onion hop: %w", err)
	}
	// hop_no < 1 is 1: whoever sent it over the peer transport is a hop.
	r.HopNo = int(max(1, min(hop, 1<<20)))
	return r, nil
}

// MarshalPeer is the sn.onion_request body for r. Written by hand (keys in
// sorted order, as bencode requires) so a relay copies the ciphertext once.
func (r Request) MarshalPeer() []byte {
	et := r.EncType.String()
	n := len(r.Ciphertext)
	out := make([]byte, 0, 80+n+len(et))
	out = append(out, "d4:data"...)
	out = strconv.AppendInt(out, int64(n), 10)
	out = append(out, ':')
	out = append(out, r.Ciphertext...)
	return r.appendPeerTail(out, et)
}

// Kind is what a decrypted layer asks the hop to do (spec §8.3).
type Kind uint8

const (
	// Final: this node is the destination; Blob is the client RPC JSON.
	Final Kind = iota + 1
	// Server: proxy the whole layer plaintext to an HTTP(S) server.
	Server
	// Relay: send Blob to the next node.
	Relay
)

func (k Kind) String() string {
	switch k {
	case Final:
		return "final_destination"
	case Server:
		return "relay_to_server"
	case Relay:
		return "relay_to_node"
	}
	return "unknown"
}

// Inner errors are answered encrypted inside a 200 (spec §8.3); their text
// is the wire text.
var (
	ErrInvalidJSON = errors.New("Invalid json")
	ErrInvalidURL  = errors.New("Invalid url")
)

// Inner is a decrypted layer.
type Inner struct {
	Kind Kind
	// Plaintext is the whole layer, Blob the framed part of it.
	Plaintext, Blob []byte

	// Final: "json": true embeds the result object; "base64": false
	// returns raw ciphertext.
	JSON, Base64 bool

	// Server.
	Host, Target, Protocol string
	Port                   int

	// Relay: Blob goes to Destination, opened with EphemeralKey/EncType.
	Destination  [32]byte
	EphemeralKey [32]byte
	EncType      EncType
}

// ParseInner classifies a decrypted layer: first match of "headers",
// "host", else relay. Errors are ErrInvalidJSON or ErrInvalidURL (wrapped
// with detail for logs).
func ParseInner(plaintext []byte) (Inner, error) {
	blob, tail, err := SplitFrame(plaintext)
	if err != nil {
		return Inner{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(tail, &m); err != nil || m == nil {
		return Inner{}, fmt.Errorf("%w: inner json is not an object", ErrInvalidJSON)
	}
	in := Inner{Plaintext: plaintext, Blob: blob}
	if _, ok := m["headers"]; ok {
		in.Kind, in.Base64 = Final, true
		if err := field(m, "json", &in.JSON, false); err != nil {
			return Inner{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
		}
		if err := field(m, "base64", &in.Base64, false); err != nil {
			return Inner{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
		}
		return in, nil
	}
	if _, ok := m["host"]; ok {
		in.Kind, in.Port, in.Protocol = Server, 443, "https"
		if err := field(m, "host", &in.Host, true); err != nil {
			return Inner{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
		}
		if err := field(m, "target", &in.Target, true); err != nil {
			return Inner{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
		}
		var port int64 = 443
		if err := field(m, "port", &port, false); err != nil {
			return Inner{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
		}
		in.Port = int(max(-1, min(port, 1<<16)))
		if err := field(m, "protocol", &in.Protocol, false); err != nil {
			return Inner{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
		}
		return in, nil
	}
	in.Kind = Relay
	if in.Destination, err = hexField(m, "destination"); err != nil {
		return Inner{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	if in.EphemeralKey, err = hexField(m, "ephemeral_key"); err != nil {
		return Inner{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	var et string
	if err := field(m, "enc_type", &et, false); err != nil {
		return Inner{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	if in.EncType, err = ParseEncType(et); err != nil {
		return Inner{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	return in, nil
}

// TargetAllowed is the proxy URL filter of spec §8.3.
func TargetAllowed(target string) bool {
	return (strings.HasPrefix(target, "/loki/") || strings.HasPrefix(target, "/oxen/")) &&
		strings.HasSuffix(target, "/lsrpc") && !strings.Contains(target, "?")
}

// URL is where a Server layer is proxied: protocol://host[:port]/target,
// or ErrInvalidURL when any part is unacceptable.
func (in Inner) URL() (string, error) {
	if !TargetAllowed(in.Target) {
		return "", fmt.Errorf("%w: target %q", ErrInvalidURL, in.Target)
	}
	if in.Protocol != "http" && in.Protocol != "https" {
		return "", fmt.Errorf("%w: protocol %q", ErrInvalidURL, in.Protocol)
	}
	if in.Port < 1 || in.Port > 65535 {
		return "", fmt.Errorf("%w: port %d", ErrInvalidURL, in.Port)
	}
	host := strings.TrimSuffix(strings.TrimPrefix(in.Host, "["), "]")
	if host == "" || strings.ContainsAny(host, "/?#@\\ \t\r\n%") {
		return "", fmt.Errorf("%w: host %q", ErrInvalidURL, in.Host)
	}
	hp := host
	if strings.Contains(host, ":") {
		hp = "[" + host + "]"
	}
	if !(in.Protocol == "https" && in.Port == 443) && !(in.Protocol == "http" && in.Port == 80) {
		hp = net.JoinHostPort(host, strconv.Itoa(in.Port))
	}
	u := url.URL{Scheme: in.Protocol, Host: hp, Path: in.Target}
	s := u.String()
	if _, err := url.Parse(s); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	return s, nil
}

// field decodes m[key] into dst; absent is an error only when required.
func field(m map[string]json.RawMessage, key string, dst any, required bool) error {
	raw, ok := m[key]
	if !ok {
		if required {
			return fmt.Errorf("%s missing", key)
		}
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%s: %v", key, err)
	}
	return nil
}

// hexField reads a required 64-hex-digit string field. Relays parse two of
// these per hop, so the common plain string is decoded in place.
func hexField(m map[string]json.RawMessage, key string) ([32]byte, error) {
	var k [32]byte
	raw, ok := m[key]
	if !ok {
		return k, fmt.Errorf("%s missing", key)
	}
	if len(raw) == 66 && raw[0] == '"' && raw[65] == '"' {
		if _, err := hex.Decode(k[:], raw[1:65]); err != nil {
			return k, fmt.Errorf("%s: %v", key, err)
		}
		return k, nil
	}
	var s string // escapes or not a string: the slow, exact path
	if err := json.Unmarshal(raw, &s); err != nil {
		return k, fmt.Errorf("%s: %v", key, err)
	}
	k, err := hexKey(s)
	if err != nil {
		return k, fmt.Errorf("%s: %v", key, err)
	}
	return k, nil
}

func hexKey(s string) ([32]byte, error) {
	var k [32]byte
	if len(s) != 64 {
		return k, fmt.Errorf("want 64 hex digits, got %d characters", len(s))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, err
	}
	return k, nil
}

// appendPeerTail writes the keys after "data" of the sn.onion_request dict
// (sorted: enc_type, ephemeral_key, hop_no) and closes it; MarshalPeer and
// the in-place RelayBody share it so the two encodings cannot drift apart.
func (r Request) appendPeerTail(out []byte, et string) []byte {
	out = append(out, "8:enc_type"...)
	out = strconv.AppendInt(out, int64(len(et)), 10)
	out = append(out, ':')
	out = append(out, et...)
	out = append(out, "13:ephemeral_key32:"...)
	out = append(out, r.EphemeralKey[:]...)
	out = append(out, "6:hop_noi"...)
	out = strconv.AppendInt(out, int64(r.HopNo), 10)
	return append(out, "ee"...)
}

// Headroom is how many free bytes a relay keeps in front of a decrypted
// layer (OpenAppend(make([]byte, Headroom, …), ct)) so RelayBody can frame
// the next hop's body around the blob where it lies.
const Headroom = 32

// RelayBody is the sn.onion_request body that sends a Relay layer on, with
// the given hop number: the same bytes as MarshalPeer. When full is the
// buffer the layer was opened into (Headroom scratch bytes, then
// in.Plaintext), it is built in place: the blob, which is most of the
// bytes, is not copied, and the bytes after it (the routing JSON, already
// parsed into in) are overwritten. full must not be used afterwards.
func RelayBody(full []byte, in Inner, hopNo int) []byte {
	r := Request{Ciphertext: in.Blob, EphemeralKey: in.EphemeralKey, EncType: in.EncType, HopNo: hopNo}
	n := len(in.Blob)
	blobAt := Headroom + 4
	if n == 0 || len(full) < blobAt+n || &full[blobAt] != &in.Blob[0] {
		return r.MarshalPeer()
	}
	var prefix [32]byte
	p := append(prefix[:0], "d4:data"...)
	p = strconv.AppendInt(p, int64(n), 10)
	p = append(p, ':')
	start := blobAt - len(p)
	copy(full[start:], p)
	out := full[start : blobAt+n]
	et := r.EncType.String()
	return r.appendPeerTail(out, et)
}
