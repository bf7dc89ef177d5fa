package bencode

import (
	"bytes"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	in := map[string]any{
		"z":    int64(-7),
		"a":    []byte{0, 1, 2, 0xff},
		"list": []any{[]byte("x"), int64(3), map[string]any{"k": []byte("v")}},
	}
	enc, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := "d1:a4:\x00\x01\x02\xff4:listl1:xi3ed1:k1:vee1:zi-7ee"
	if string(enc) != want {
		t.Fatalf("encoding = %q, want %q (keys sorted)", enc, want)
	}
	out, err := Unmarshal(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip = %#v, want %#v", out, in)
	}
}

func TestGoTypes(t *testing.T) {
	enc, err := Marshal([]any{"s", 5, true, false, uint64(1 << 63), []string{"a"}, [][]byte{{1}}, []int64{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "l1:si5ei1ei0ei9223372036854775808el1:ael1:\x01eli1ei2eee"; string(enc) != want {
		t.Fatalf("got %q want %q", enc, want)
	}
	if _, err := Marshal(struct{}{}); err == nil {
		t.Fatal("struct must be refused")
	}
}

func TestMalformed(t *testing.T) {
	for _, in := range []string{
		"", "i", "ie", "i-0e", "i01e", "i1", "5:abc", "-1:a", "l", "d1:a", "d1:ai1e",
		"di1ei2ee", "x", "i1ei2e", "99999999999:a", "l" + string(bytes.Repeat([]byte("l"), 100)),
	} {
		if v, err := Unmarshal([]byte(in)); err == nil {
			t.Errorf("Unmarshal(%q) = %v, want error", in, v)
		}
	}
}

func TestDictAccessors(t *testing.T) {
	v, err := Unmarshal([]byte("d1:bi5e1:s3:abc1:ll1:xee"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := AsDict(v)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok, err := d.Int("b"); n != 5 || !ok || err != nil {
		t.Fatalf("Int = %d %v %v", n, ok, err)
	}
	if _, _, err := d.Int("s"); err == nil {
		t.Fatal("Int of string must fail")
	}
	if s, ok, err := d.Bytes("s"); string(s) != "abc" || !ok || err != nil {
		t.Fatalf("Bytes = %q %v %v", s, ok, err)
	}
	if _, ok, _ := d.Bytes("missing"); ok {
		t.Fatal("missing key reported present")
	}
	if l, ok, err := d.List("l"); len(l) != 1 || !ok || err != nil {
		t.Fatalf("List = %v %v %v", l, ok, err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte("d1:ai1e1:bl1:xee"))
	f.Add([]byte("i-5e"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Unmarshal(data)
		if err != nil {
			return
		}
		enc, err := Marshal(v)
		if err != nil {
			t.Fatalf("decoded value does not re-encode: %v", err)
		}
		v2, err := Unmarshal(enc)
		if err != nil || !reflect.DeepEqual(v, v2) {
			t.Fatalf("re-encode not stable: %v", err)
		}
	})
}

// acceptanceCases are inputs Unmarshal accepts and refuses, for checking
// that Valid and SplitList draw the same line.
var acceptanceCases = []string{
	"i0e", "i-7e", "i18446744073709551615e", "0:", "3:abc", "le", "de",
	"l1:xi3ed1:k1:vee", "d1:a4:\x00\x01\x02\xff4:listl1:xi3ed1:k1:vee1:zi-7ee",
	"l7:storaged6:pubkey3:abc4:datai1eee", "d1:bi1e1:ai2ee", "d1:ai1e1:ai2ee",
	"", "i", "ie", "i-0e", "i01e", "i1", "5:abc", "-1:a", "l", "d1:a", "d1:ai1e",
	"di1ei2ee", "x", "i1ei2e", "99999999999:a", "l" + string(bytes.Repeat([]byte("l"), 100)),
	"l1:xe1:y", "li1e", "l5:abce", "lxe", "li01ee", "ld1:ai1eee",
}

func TestValidAcceptsWhatUnmarshalDoes(t *testing.T) {
	for _, in := range acceptanceCases {
		_, uerr := Unmarshal([]byte(in))
		if verr := Valid([]byte(in)); (verr == nil) != (uerr == nil) {
			t.Errorf("%q: Valid says %v, Unmarshal %v", in, verr, uerr)
		}
	}
}

// SplitList hands back each element's own encoding: decoding a part gives
// the element Unmarshal finds in the list.
func TestSplitListPartsAreTheElements(t *testing.T) {
	for _, in := range acceptanceCases {
		v, uerr := Unmarshal([]byte(in))
		list, isList := v.([]any)
		parts, err := SplitList([]byte(in))
		if uerr != nil || !isList {
			if err == nil {
				t.Errorf("%q: SplitList = %q, want an error (Unmarshal: %v, %T)", in, parts, uerr, v)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: SplitList: %v", in, err)
			continue
		}
		if len(parts) != len(list) {
			t.Errorf("%q: %d parts, want %d", in, len(parts), len(list))
			continue
		}
		for i, p := range parts {
			if e, err := Unmarshal(p); err != nil || !reflect.DeepEqual(e, list[i]) {
				t.Errorf("%q part %d = %q: decodes to %v (%v), want %v", in, i, p, e, err, list[i])
			}
		}
	}
}

func FuzzValidAgreesWithUnmarshal(f *testing.F) {
	for _, in := range acceptanceCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, uerr := Unmarshal(in)
		if verr := Valid(in); (verr == nil) != (uerr == nil) {
			t.Fatalf("Valid says %v, Unmarshal %v", verr, uerr)
		}
		_, isList := v.([]any)
		if _, err := SplitList(in); (err == nil) != (uerr == nil && isList) {
			t.Fatalf("SplitList says %v; Unmarshal %v, a list: %v", err, uerr, isList)
		}
	})
}
