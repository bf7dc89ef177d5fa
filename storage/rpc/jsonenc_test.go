package rpc

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/snodebox/snodebox/storage"
)

// stdJSON is what answers looked like before appendJSON: encoding/json with
// HTML escaping off.
func stdJSON(t testing.TB, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Every answer shape the methods build encodes byte for byte as
// encoding/json encodes it, so clients see no change.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	tricky := "a<b>&c \"q\" \\ \b\f\n\r\t\x00\x01\x1f\x7f é ✓ \u2028\u2029 \xff\xfe end"
	cases := []struct {
		name string
		v    any
	}{
		{"nil", nil},
		{"string", "plain"},
		{"tricky string", tricky},
		{"empty string", ""},
		{"bools", []any{true, false}},
		{"ints", map[string]any{"a": int64(-1 << 63), "b": 1<<63 - 1, "c": 0}},
		{"bytes", []byte{0, 1, 2, 250, 251, 252, 253, 254, 255}},
		{"empty bytes", []byte{}},
		{"nil bytes", []byte(nil)},
		{"nil slices", map[string]any{"a": []any(nil), "s": []string(nil), "i": []int64(nil), "n": []int(nil), "m": map[string]any(nil)}},
		{"empty slices", map[string]any{"a": []any{}, "s": []string{}, "i": []int64{}, "n": []int{}, "m": map[string]any{}}},
		{"sorted keys", map[string]any{"z": 1, "a": 2, "A": 3, "é": 4, "": 5, "aa": 6, tricky: 7}},
		{"hf", []int{19, 3}},
		{"hashes", []string{"h1", tricky}},
		{"expiries", []int64{1700000000000, -5}},
		{"retrieve answer", map[string]any{
			"messages": []any{
				map[string]any{"hash": "rY7K5YXNsg7d8LBP6R4OoOr6L7IMFxa3Tr8ca5v5nBI", "timestamp": int64(1700000000000), "expiration": int64(1700086400000), "data": []byte("hello <world>")},
				map[string]any{"hash": "x", "timestamp": int64(1), "expiration": int64(2), "data": []byte{}},
			},
			"more": true, "t": int64(1700000000123), "hf": []int{19, 3},
		}},
		{"store answer", map[string]any{
			"hash": "h", "t": int64(5), "hf": []int{19, 3},
			"swarm": map[string]any{
				"aa": map[string]any{"hash": "h", "signature": []byte{1, 2, 3}, "expiry": int64(9), "already": true},
				"bb": map[string]any{"failed": true, "timeout": true},
				"cc": map[string]any{"failed": true, "code": 503, "reason": tricky},
			},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := appendJSON(nil, c.v)
			if !ok {
				t.Fatalf("appendJSON refused %#v", c.v)
			}
			if want := stdJSON(t, c.v); !bytes.Equal(got, want) {
				t.Errorf("appendJSON:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// A type appendJSON does not know (anywhere in the tree) is refused, so
// encodeJSON falls back to encoding/json for the whole body.
func TestAppendJSONRefusesUnknownTypes(t *testing.T) {
	for _, v := range []any{
		1.5,
		uint64(3),
		map[string]any{"a": []any{int64(1), map[string]any{"deep": float32(1)}}},
		struct{ A int }{1},
	} {
		if _, ok := appendJSON(nil, v); ok {
			t.Errorf("appendJSON accepted %#v", v)
		}
		out, isJSON := encodeJSON(response{200, v})
		if want := stdJSON(t, v); !isJSON || !bytes.Equal(out, want) {
			t.Errorf("encodeJSON(%#v) = %s, %v; want %s", v, out, isJSON, want)
		}
	}
}

// FuzzAppendJSONString: any string, as a value and as a map key, encodes as
// encoding/json encodes it.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "\x00\x1f\"\\", "\u2028\u2029", "\xff", "é✓", "<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := map[string]any{s: []any{s, []string{s}, []byte(s)}}
		got, ok := appendJSON(nil, v)
		if !ok {
			t.Fatal("refused")
		}
		if want := stdJSON(t, v); !bytes.Equal(got, want) {
			t.Errorf("appendJSON(%q):\n got %s\nwant %s", s, got, want)
		}
	})
}

func BenchmarkEncodeRetrieveAnswer(b *testing.B) {
	msgs := make([]any, 20)
	for i := range msgs {
		msgs[i] = map[string]any{"hash": "rY7K5YXNsg7d8LBP6R4OoOr6L7IMFxa3Tr8ca5v5nBI", "timestamp": int64(1700000000000), "expiration": int64(1700086400000), "data": bytes.Repeat([]byte{byte(i)}, 1024)}
	}
	body := map[string]any{"messages": msgs, "more": false, "t": int64(1700000000123), "hf": []int{19, 3}}
	b.Run("encoding-json", func(b *testing.B) {
		for range b.N {
			stdJSON(b, body)
		}
	})
	b.Run("appendJSON", func(b *testing.B) {
		for range b.N {
			encodeJSON(response{200, body})
		}
	})
}

// A retrieve answer's messages encode as the per-message maps they replace
// did (spec §4.2 fields; empty data as "", an empty list as []), directly
// and through the encoding/json fallback.
func TestRetrievedMessagesMatchMaps(t *testing.T) {
	for _, msgs := range [][]storage.Message{
		nil,
		{},
		{{Hash: "rY7K5YXNsg7d8LBP6R4OoOr6L7IMFxa3Tr8ca5v5nBI", Timestamp: 1700000000000, Expiry: 1700086400000, Data: []byte("hello <world> & more")}},
		{{Hash: "a", Timestamp: 1, Expiry: 2, Data: nil}, {Hash: "b\"\\\u2028", Timestamp: -3, Expiry: 4, Data: []byte{}}, {Hash: "c", Data: bytes.Repeat([]byte{0xff, 0}, 700)}},
	} {
		maps := make([]any, 0, len(msgs))
		for _, m := range msgs {
			data := m.Data
			if data == nil {
				data = []byte{}
			}
			maps = append(maps, map[string]any{"hash": m.Hash, "timestamp": m.Timestamp, "expiration": m.Expiry, "data": data})
		}
		want := stdJSON(t, map[string]any{"messages": maps, "more": true})
		got, ok := appendJSON(nil, map[string]any{"messages": retrievedMessages(msgs), "more": true})
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("appendJSON: %v\n got %s\nwant %s", ok, got, want)
		}
		if fallback := stdJSON(t, map[string]any{"messages": retrievedMessages(msgs), "more": true}); !bytes.Equal(fallback, want) {
			t.Errorf("encoding/json fallback:\n got %s\nwant %s", fallback, want)
		}
	}
}
