package tuning

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// setRlimit raises the soft and hard limit; if the hard limit cannot be
// raised (not root) it raises the soft limit as far as the hard one allows.
func setRlimit(name string, value uint64) (uint64, error) {
	if name != "rlimit.nofile" {
		return 0, fmt.Errorf("%w: %s", ErrUnavailable, name)
	}
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &cur); err != nil {
		return 0, err
	}
	err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: value, Max: max(value, cur.Max)})
	if err != nil {
		err = unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: min(value, cur.Max), Max: cur.Max})
	}
	var got unix.Rlimit
	if gerr := unix.Getrlimit(unix.RLIMIT_NOFILE, &got); gerr != nil {
		return 0, gerr
	}
	return got.Cur, err
}
