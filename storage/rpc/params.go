package rpc

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/storage"
)

// parseError is a client mistake in the request; it answers 400
// "invalid request: <text>" like the reference parser.
type parseError string

func (e parseError) Error() string { return string(e) }

func perr(format string, args ...any) error { return parseError(fmt.Sprintf(format, args...)) }

// params reads one request's fields from either encoding: a JSON object
// (client HTTP/onion requests) or a bt dict (forwarded sn.storage_cc
// requests, where binary fields are raw bytes instead of hex/base64).
type params struct {
	j     map[string]json.RawMessage
	bt    bencode.Dict
	depth int // batch/ifelse nesting
}

func (p *params) isBT() bool { return p.bt != nil }

// raw returns the JSON value of key, nil when absent or null.
func (p *params) raw(key string) json.RawMessage {
	v, ok := p.j[key]
	if !ok {
		return nil
	}
	v = bytes.TrimSpace(v)
	if string(v) == "null" {
		return nil
	}
	return v
}

func (p *params) has(key string) bool {
	if p.isBT() {
		return p.bt.Has(key)
	}
	return p.raw(key) != nil
}

func typeErr(key, want string) error {
	return perr("Invalid value given for '%s': expected %s", key, want)
}

// str reads a string field (bt: raw bytes as a string).
func (p *params) str(key string) (string, bool, error) {
	if p.isBT() {
		b, ok, err := p.bt.Bytes(key)
		if err != nil {
			return "", true, typeErr(key, "string")
		}
		return string(b), ok, nil
	}
	r := p.raw(key)
	if r == nil {
		return "", false, nil
	}
	if s, ok := fastString(r); ok {
		return s, true, nil
	}
	var s string
	if r[0] != '"' || json.Unmarshal(r, &s) != nil {
		return "", true, typeErr(key, "string")
	}
	return s, true, nil
}

// fastString reads a JSON string literal that needs no unescaping — every
// hex key, base64 blob and hash — without another decoding pass. ok is
// false when the literal needs the full decoder.
func fastString(r []byte) (string, bool) {
	if len(r) < 2 || r[0] != '"' || r[len(r)-1] != '"' {
		return "", false
	}
	inner := r[1 : len(r)-1]
	for _, c := range inner {
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return "", false
		}
	}
	return string(inner), true
}

// jsonInt parses a JSON integer literal; unsigned requires no minus sign.
// Fractions and exponents are not integers (as nlohmann's is_number_integer).
func jsonInt(r json.RawMessage, unsigned bool) (int64, bool) {
	s := string(r)
	if unsigned {
		u, err := strconv.ParseUint(s, 10, 64)
		if err != nil || u > 1<<63-1 {
			return 0, false
		}
		return int64(u), true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// integer reads a signed integer.
func (p *params) integer(key string) (int64, bool, error) {
	if p.isBT() {
		n, ok, err := p.bt.Int(key)
		if err != nil {
			return 0, true, typeErr(key, "integer")
		}
		return n, ok, nil
	}
	r := p.raw(key)
	if r == nil {
		return 0, false, nil
	}
	n, ok := jsonInt(r, false)
	if !ok {
		return 0, true, typeErr(key, "integer")
	}
	return n, true, nil
}

// minTimestampMS: values below 1,000,000 s are almost surely seconds.
const minTimestampMS = 1_000_000 * 1000

func checkMS(key string, ms int64) error {
	if ms < minTimestampMS {
		return perr("Invalid timestamp for '%s': timestamp must be in milliseconds", key)
	}
	return nil
}

// timestamp reads an unsigned millisecond timestamp.
func (p *params) timestamp(key string) (int64, bool, error) {
	var ms int64
	if p.isBT() {
		n, ok, err := p.bt.Int(key)
		if err != nil || n < 0 {
			return 0, true, typeErr(key, "integer timestamp (in milliseconds)")
		}
		if !ok {
			return 0, false, nil
		}
		ms = n
	} else {
		r := p.raw(key)
		if r == nil {
			return 0, false, nil
		}
		n, ok := jsonInt(r, true)
		if !ok {
			return 0, true, typeErr(key, "integer timestamp (in milliseconds)")
		}
		ms = n
	}
	return ms, true, checkMS(key, ms)
}

// stringified reads store's timestamp/ttl, which JSON clients may send as
// a string holding an integer (backwards compatibility).
func (p *params) stringified(key string, unsigned bool) (int64, bool, error) {
	if !p.isBT() {
		if r := p.raw(key); r != nil && r[0] == '"' {
			var s string
			if json.Unmarshal(r, &s) != nil {
				return 0, true, perr("Invalid value given for '%s': %s", key, r)
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || (unsigned && n < 0) {
				return 0, true, perr("Invalid value given for '%s': %s", key, r)
			}
			return n, true, nil
		}
		r := p.raw(key)
		if r == nil {
			return 0, false, nil
		}
		n, ok := jsonInt(r, unsigned)
		if !ok {
			if unsigned {
				return 0, true, typeErr(key, "positive integer")
			}
			return 0, true, typeErr(key, "integer")
		}
		return n, true, nil
	}
	n, ok, err := p.bt.Int(key)
	if err != nil || (unsigned && n < 0) {
		return 0, true, typeErr(key, "integer")
	}
	return n, ok, nil
}

// boolean reads a JSON boolean (bt: an integer, non-zero = true).
func (p *params) boolean(key string) (bool, bool, error) {
	if p.isBT() {
		n, ok, err := p.bt.Int(key)
		if err != nil {
			return false, true, typeErr(key, "boolean")
		}
		return n != 0, ok, nil
	}
	r := p.raw(key)
	if r == nil {
		return false, false, nil
	}
	switch string(r) {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, true, typeErr(key, "boolean")
}

// strList reads a list of strings, or a single string as a one-element list.
func (p *params) strList(key string) ([]string, bool, error) {
	if p.isBT() {
		v, ok := p.bt[key]
		if !ok {
			return nil, false, nil
		}
		switch x := v.(type) {
		case []byte:
			return []string{string(x)}, true, nil
		case []any:
			out := make([]string, len(x))
			for i, e := range x {
				b, isStr := e.([]byte)
				if !isStr {
					return nil, true, typeErr(key, "string array")
				}
				out[i] = string(b)
			}
			return out, true, nil
		}
		return nil, true, typeErr(key, "string array")
	}
	r := p.raw(key)
	if r == nil {
		return nil, false, nil
	}
	if r[0] == '"' {
		var s string
		if json.Unmarshal(r, &s) != nil {
			return nil, true, typeErr(key, "string array")
		}
		return []string{s}, true, nil
	}
	var out []string
	if r[0] != '[' || json.Unmarshal(r, &out) != nil {
		return nil, true, typeErr(key, "string array")
	}
	if out == nil {
		out = []string{}
	}
	return out, true, nil
}

// timestampList reads a list of ms timestamps, or a single one.
func (p *params) timestampList(key string) ([]int64, bool, error) {
	const want = "timestamp array"
	var out []int64
	if p.isBT() {
		v, ok := p.bt[key]
		if !ok {
			return nil, false, nil
		}
		switch x := v.(type) {
		case int64:
			out = []int64{x}
		case []any:
			for _, e := range x {
				n, isInt := e.(int64)
				if !isInt {
					return nil, true, typeErr(key, want)
				}
				out = append(out, n)
			}
		default:
			return nil, true, typeErr(key, want)
		}
	} else {
		r := p.raw(key)
		if r == nil {
			return nil, false, nil
		}
		if r[0] == '[' {
			var items []json.RawMessage
			if json.Unmarshal(r, &items) != nil {
				return nil, true, typeErr(key, want)
			}
			for _, it := range items {
				n, ok := jsonInt(bytes.TrimSpace(it), true)
				if !ok {
					return nil, true, typeErr(key, want)
				}
				out = append(out, n)
			}
		} else {
			n, ok := jsonInt(r, true)
			if !ok {
				return nil, true, typeErr(key, want)
			}
			out = []int64{n}
		}
	}
	for _, ms := range out {
		if ms < 0 {
			return nil, true, typeErr(key, want)
		}
		if err := checkMS(key, ms); err != nil {
			return nil, true, err
		}
	}
	return out, true, nil
}

// namespace reads a namespace; allowAll also accepts "all".
func (p *params) namespace(key string, allowAll bool) (storage.NSFilter, bool, error) {
	want := "16-bit integer"
	if allowAll {
		want = `integer or "all"`
	}
	if !p.has(key) {
		return storage.NSFilter{}, false, nil
	}
	if s, _, err := p.str(key); err == nil {
		if allowAll && s == "all" {
			return storage.NSFilter{All: true}, true, nil
		}
		return storage.NSFilter{}, true, typeErr(key, want)
	}
	n, _, err := p.integer(key)
	if err != nil {
		return storage.NSFilter{}, true, typeErr(key, want)
	}
	if n < -32768 || n > 32767 {
		return storage.NSFilter{}, true, perr("Invalid value given for '%s': value out of range", key)
	}
	return storage.NSFilter{NS: storage.Namespace(n)}, true, nil
}

// isB64 reports whether s is standard base64, padded or not (oxenc's
// is_base64 accepts both).
func b64Decode(s string) ([]byte, bool) {
	if len(s)%4 == 0 {
		if b, err := base64.StdEncoding.Strict().DecodeString(s); err == nil {
			return b, true
		}
	}
	b, err := base64.RawStdEncoding.Strict().DecodeString(s)
	return b, err == nil
}

// sig64 decodes an Ed25519 signature field: b64 of 86 chars (unpadded) or
// 88 ending "==" in JSON, 64 raw bytes in bt.
func (p *params) sig64(key, what string) ([]byte, bool, error) {
	s, ok, err := p.str(key)
	if !ok || err != nil {
		return nil, ok, err
	}
	if p.isBT() {
		if len(s) != 64 {
			return nil, true, perr("invalid %s: expected 64-byte Ed25519 signature", what)
		}
		return []byte(s), true, nil
	}
	if len(s) == 86 || (len(s) == 88 && s[86:] == "==") {
		if b, ok := b64Decode(s); ok && len(b) == 64 {
			return b, true, nil
		}
	}
	return nil, true, perr("invalid %s: expected base64 encoded Ed25519 signature", what)
}

// token36 decodes a subaccount token: 48 b64 chars or 72 hex in JSON, 36
// raw bytes in bt.
func decodeToken(s string, bt bool) ([]byte, bool) {
	if bt {
		return []byte(s), len(s) == 36
	}
	if len(s) == 48 {
		if b, ok := b64Decode(s); ok && len(b) == 36 {
			return b, true
		}
	}
	if len(s) == 72 {
		if b, err := hex.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}

// data decodes store data: b64 in JSON (≤ 102,400 chars), raw in bt.
func (p *params) data(key string) ([]byte, bool, error) {
	s, ok, err := p.str(key)
	if !ok || err != nil {
		return nil, ok, err
	}
	if p.isBT() {
		if len(s) > MaxMessageData {
			return nil, true, perr("Message body exceeds maximum allowed length of %d bytes", MaxMessageData)
		}
		return []byte(s), true, nil
	}
	b, isB64 := b64Decode(s)
	if !isB64 {
		return nil, true, perr("Invalid 'data' value: not base64 encoded")
	}
	if len(s) > MaxMessageData/3*4 {
		return nil, true, perr("Message body exceeds maximum allowed length of %d bytes", MaxMessageData)
	}
	return b, true, nil
}
