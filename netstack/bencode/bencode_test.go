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
