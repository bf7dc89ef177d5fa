package rpc

import (
	"encoding/base64"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/snodebox/snodebox/storage"
)

// appendJSON writes an answer body the way encoding/json does with HTML
// escaping off (sorted map keys, base64 for []byte, null for nil slices and
// maps, the same string escapes), without reflection: a retrieve answer is
// twenty maps of 1 KiB messages, and the reflective encoder's per-value
// work and sorting allocations were a tenth of a node's CPU per retrieve.
// It reports false for a value of any other type; the caller then uses
// encoding/json for the whole body.
func appendJSON(dst []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), true
	case string:
		return appendJSONString(dst, x), true
	case bool:
		return strconv.AppendBool(dst, x), true
	case int64:
		return strconv.AppendInt(dst, x, 10), true
	case int:
		return strconv.AppendInt(dst, int64(x), 10), true
	case []byte:
		if x == nil {
			return append(dst, "null"...), true
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, x)
		return append(dst, '"'), true
	case map[string]any:
		if x == nil {
			return append(dst, "null"...), true
		}
		keys := keyPool.Get().(*[]string)
		ks := (*keys)[:0]
		for k := range x {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		dst = append(dst, '{')
		ok := true
		for i, k := range ks {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			if dst, ok = appendJSON(dst, x[k]); !ok {
				break
			}
		}
		clear(ks)
		*keys = ks[:0]
		keyPool.Put(keys)
		return append(dst, '}'), ok
	case []any:
		if x == nil {
			return append(dst, "null"...), true
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = appendJSON(dst, e); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case []string:
		if x == nil {
			return append(dst, "null"...), true
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, e)
		}
		return append(dst, ']'), true
	case []int64:
		if x == nil {
			return append(dst, "null"...), true
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, e, 10)
		}
		return append(dst, ']'), true
	case retrievedMessages:
		return x.appendJSON(dst), true
	case []int:
		if x == nil {
			return append(dst, "null"...), true
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, int64(e), 10)
		}
		return append(dst, ']'), true
	}
	return dst, false
}

// encodeFast hands fn appendJSON's rendering of v in a reused scratch
// buffer, valid only during fn: growing a fresh slice to a 30 KB retrieve
// answer cost more in large allocations than reflection did, and an HTTP
// answer is written straight from the scratch without a copy.
func encodeFast(v any, fn func(out []byte)) bool {
	scratch := scratchPool.Get().(*[]byte)
	buf, ok := appendJSON((*scratch)[:0], v)
	if ok {
		fn(buf)
	}
	// Very large answers (a full 7.8 MB retrieve) are not kept around.
	if cap(buf) <= 256<<10 {
		*scratch = buf[:0]
		scratchPool.Put(scratch)
	}
	return ok
}

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

var keyPool = sync.Pool{New: func() any { return new([]string) }}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoding with HTML escaping
// off: quotes, backslashes and control characters escaped (\b \f \n \r \t
// short), invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// retrievedMessages is the "messages" list of a retrieve answer, encoded
// straight from the stored messages: building a map per message for the
// encoder was a hundred allocations per 20-message answer.
type retrievedMessages []storage.Message

// appendJSON writes [{"data","expiration","hash","timestamp"}, …] (keys in
// encoding/json's order; empty data as "", never null; [] when empty).
func (ms retrievedMessages) appendJSON(dst []byte) []byte {
	dst = append(dst, '[')
	for i, m := range ms {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"data":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, m.Data)
		dst = append(dst, `","expiration":`...)
		dst = strconv.AppendInt(dst, m.Expiry, 10)
		dst = append(dst, `,"hash":`...)
		dst = appendJSONString(dst, m.Hash)
		dst = append(dst, `,"timestamp":`...)
		dst = strconv.AppendInt(dst, m.Timestamp, 10)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// MarshalJSON keeps the same answer when a body falls back to
// encoding/json.
func (ms retrievedMessages) MarshalJSON() ([]byte, error) { return ms.appendJSON(nil), nil }
