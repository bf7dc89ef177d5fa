package benchfig

import "testing"

func TestNum(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{{4.25, "4.2"}, {38.66, "38.7"}, {100, "100"}, {4800, "4,800"}, {1234567, "1,234,567"}} {
		if got := Num(c.in); got != c.want {
			t.Errorf("Num(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
