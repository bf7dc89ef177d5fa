// Package bencode encodes and decodes the bencoding used on the Session
// node-to-node wire (sn.storage_cc, sn.data, onion hops, data_ready).
//
// The value model is deliberately small: strings decode to []byte (they are
// binary: raw keys, signatures, ciphertexts), integers to int64, lists to
// []any and dictionaries to map[string]any. Marshal accepts those plus the
// Go types that map onto them naturally (string, the integer kinds, bool as
// 0/1, []string, [][]byte, []int64, map[string]any).
//
// We keep our own codec rather than a library: the only bencode package the
// module proxy carries here lives inside a BitTorrent client module, far too
// heavy for ~200 lines of a tightly specified format.
package bencode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
)

// MaxDepth bounds nesting so hostile input cannot exhaust the stack.
const MaxDepth = 64

// Marshal encodes v. Dictionary keys are written sorted, as the spec requires.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := encode(&b, v, 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// MustMarshal is for values built in code whose types are known to be valid.
// It never panics: an invalid value yields nil, which a peer rejects.
func MustMarshal(v any) []byte {
	b, _ := Marshal(v)
	return b
}

func encode(b *bytes.Buffer, v any, depth int) error {
	if depth > MaxDepth {
		return errors.New("bencode: nesting too deep")
	}
	switch x := v.(type) {
	case []byte:
		b.WriteString(strconv.Itoa(len(x)))
		b.WriteByte(':')
		b.Write(x)
	case string:
		b.WriteString(strconv.Itoa(len(x)))
		b.WriteByte(':')
		b.WriteString(x)
	case int:
		writeInt(b, int64(x))
	case int8:
		writeInt(b, int64(x))
	case int16:
		writeInt(b, int64(x))
	case int32:
		writeInt(b, int64(x))
	case int64:
		writeInt(b, x)
	case uint8:
		writeInt(b, int64(x))
	case uint16:
		writeInt(b, int64(x))
	case uint32:
		writeInt(b, int64(x))
	case uint64:
		b.WriteByte('i')
		b.WriteString(strconv.FormatUint(x, 10))
		b.WriteByte('e')
	case bool:
		if x {
			writeInt(b, 1)
		} else {
			writeInt(b, 0)
		}
	case []any:
		b.WriteByte('l')
		for _, e := range x {
			if err := encode(b, e, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte('e')
	case []string:
		b.WriteByte('l')
		for _, e := range x {
			_ = encode(b, e, depth+1)
		}
		b.WriteByte('e')
	case [][]byte:
		b.WriteByte('l')
		for _, e := range x {
			_ = encode(b, e, depth+1)
		}
		b.WriteByte('e')
	case []int64:
		b.WriteByte('l')
		for _, e := range x {
			writeInt(b, e)
		}
		b.WriteByte('e')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('d')
		for _, k := range keys {
			_ = encode(b, k, depth+1)
			if err := encode(b, x[k], depth+1); err != nil {
				return fmt.Errorf("key %q: %w", k, err)
			}
		}
		b.WriteByte('e')
	default:
		return fmt.Errorf("bencode: cannot encode %T", v)
	}
	return nil
}

func writeInt(b *bytes.Buffer, n int64) {
	b.WriteByte('i')
	b.WriteString(strconv.FormatInt(n, 10))
	b.WriteByte('e')
}

// Unmarshal decodes exactly one value that must fill data.
func Unmarshal(data []byte) (any, error) {
	d := decoder{buf: data}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(d.buf) {
		return nil, fmt.Errorf("bencode: %d trailing bytes", len(d.buf)-d.pos)
	}
	return v, nil
}

// UnmarshalPrefix decodes one value from the front of data and returns the
// number of bytes it used (for framings that append bencode to other data).
func UnmarshalPrefix(data []byte) (any, int, error) {
	d := decoder{buf: data}
	v, err := d.value(0)
	return v, d.pos, err
}

type decoder struct {
	buf []byte
	pos int
}

var errEOF = fmt.Errorf("bencode: %w", io.ErrUnexpectedEOF)

func (d *decoder) value(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, errors.New("bencode: nesting too deep")
	}
	if d.pos >= len(d.buf) {
		return nil, errEOF
	}
	switch c := d.buf[d.pos]; {
	case c == 'i':
		d.pos++
		end := bytes.IndexByte(d.buf[d.pos:], 'e')
		if end < 0 {
			return nil, errEOF
		}
		s := string(d.buf[d.pos : d.pos+end])
		if s == "" || s == "-0" || (len(s) > 1 && s[0] == '0') || (len(s) > 2 && s[0] == '-' && s[1] == '0') {
			return nil, fmt.Errorf("bencode: malformed integer %q at %d", s, d.pos)
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			u, uerr := strconv.ParseUint(s, 10, 64)
			if uerr != nil {
				return nil, fmt.Errorf("bencode: integer %q at %d: %w", s, d.pos, err)
			}
			d.pos += end + 1
			return u, nil
		}
		d.pos += end + 1
		return n, nil
	case c >= '0' && c <= '9':
		return d.str()
	case c == 'l':
		d.pos++
		list := []any{}
		for {
			if d.pos >= len(d.buf) {
				return nil, errEOF
			}
			if d.buf[d.pos] == 'e' {
				d.pos++
				return list, nil
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
	case c == 'd':
		d.pos++
		m := map[string]any{}
		for {
			if d.pos >= len(d.buf) {
				return nil, errEOF
			}
			if d.buf[d.pos] == 'e' {
				d.pos++
				return m, nil
			}
			k, err := d.str()
			if err != nil {
				return nil, fmt.Errorf("bencode: dict key: %w", err)
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			m[string(k)] = v
		}
	default:
		return nil, fmt.Errorf("bencode: unexpected byte %q at %d", c, d.pos)
	}
}

func (d *decoder) str() ([]byte, error) {
	colon := bytes.IndexByte(d.buf[d.pos:], ':')
	if colon < 0 || colon > 10 {
		return nil, fmt.Errorf("bencode: malformed string length at %d", d.pos)
	}
	n, err := strconv.Atoi(string(d.buf[d.pos : d.pos+colon]))
	if err != nil || n < 0 {
		return nil, fmt.Errorf("bencode: malformed string length at %d", d.pos)
	}
	start := d.pos + colon + 1
	if n > len(d.buf)-start {
		return nil, errEOF
	}
	d.pos = start + n
	return d.buf[start:d.pos], nil
}

// Dict is a decoded dictionary with typed accessors that report clear errors.
type Dict map[string]any

// AsDict converts a decoded value into a Dict.
func AsDict(v any) (Dict, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("bencode: expected dict, got %T", v)
	}
	return Dict(m), nil
}

// Has reports whether key is present.
func (d Dict) Has(key string) bool { _, ok := d[key]; return ok }

// Bytes returns a string value; ok is false when absent.
func (d Dict) Bytes(key string) (b []byte, ok bool, err error) {
	v, present := d[key]
	if !present {
		return nil, false, nil
	}
	b, isStr := v.([]byte)
	if !isStr {
		return nil, true, fmt.Errorf("%s: expected string, got %T", key, v)
	}
	return b, true, nil
}

// Int returns an integer value; ok is false when absent.
func (d Dict) Int(key string) (n int64, ok bool, err error) {
	v, present := d[key]
	if !present {
		return 0, false, nil
	}
	switch x := v.(type) {
	case int64:
		return x, true, nil
	case uint64:
		return 0, true, fmt.Errorf("%s: integer %d out of range", key, x)
	}
	return 0, true, fmt.Errorf("%s: expected integer, got %T", key, v)
}

// List returns a list value; ok is false when absent.
func (d Dict) List(key string) (l []any, ok bool, err error) {
	v, present := d[key]
	if !present {
		return nil, false, nil
	}
	l, isList := v.([]any)
	if !isList {
		return nil, true, fmt.Errorf("%s: expected list, got %T", key, v)
	}
	return l, true, nil
}

// SplitList returns the elements of the bencoded list that fills data, each
// as the bytes that encode it (aliasing data), checking their syntax as
// Unmarshal does: for relaying a list's parts (sn.storage_cc's method and
// params between the HTTPS and OMQ framings) without decoding and encoding
// a kilobyte of message each way.
func SplitList(data []byte) ([][]byte, error) {
	if len(data) == 0 || data[0] != 'l' {
		return nil, errors.New("bencode: not a list")
	}
	d := decoder{buf: data, pos: 1}
	var out [][]byte
	for {
		if d.pos >= len(d.buf) {
			return nil, errEOF
		}
		if d.buf[d.pos] == 'e' {
			d.pos++
			break
		}
		start := d.pos
		if err := d.skip(1); err != nil {
			return nil, err
		}
		out = append(out, data[start:d.pos])
	}
	if d.pos != len(d.buf) {
		return nil, fmt.Errorf("bencode: %d trailing bytes", len(d.buf)-d.pos)
	}
	return out, nil
}

// Valid reports whether data is exactly one well-formed value, as Unmarshal
// would accept it, without building it.
func Valid(data []byte) error {
	d := decoder{buf: data}
	if err := d.skip(0); err != nil {
		return err
	}
	if d.pos != len(d.buf) {
		return fmt.Errorf("bencode: %d trailing bytes", len(d.buf)-d.pos)
	}
	return nil
}

// skip moves past one value, checking it as value does.
func (d *decoder) skip(depth int) error {
	if depth > MaxDepth {
		return errors.New("bencode: nesting too deep")
	}
	if d.pos >= len(d.buf) {
		return errEOF
	}
	switch c := d.buf[d.pos]; {
	case c == 'i':
		_, err := d.value(depth) // an integer: nothing to build
		return err
	case c >= '0' && c <= '9':
		_, err := d.str()
		return err
	case c == 'l' || c == 'd':
		d.pos++
		for {
			if d.pos >= len(d.buf) {
				return errEOF
			}
			if d.buf[d.pos] == 'e' {
				d.pos++
				return nil
			}
			if c == 'd' {
				if _, err := d.str(); err != nil {
					return fmt.Errorf("bencode: dict key: %w", err)
				}
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("bencode: unexpected byte %q at %d", c, d.pos)
	}
}
