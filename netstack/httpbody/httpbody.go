// Package httpbody reads HTTP bodies into buffers sized from their
// declared length.
//
// io.ReadAll grows from 512 bytes: a 27 KB retrieve answer or a 1.6 KB
// store request was copied and reallocated several times, and on a
// 2-core board every request and answer pays for it.
package httpbody

import "io"

// Read reads r until EOF or until limit bytes, whichever comes first. The
// buffer is allocated once from declared (a Content-Length, or -1 when
// unknown) when that is within limit; a body that runs past its
// declared length is still read, by growing. A caller that wants to see
// an over-long body passes its maximum plus one.
func Read(r io.Reader, declared, limit int64) ([]byte, error) {
	lr := io.LimitReader(r, limit)
	if declared < 0 || declared >= limit {
		return io.ReadAll(lr)
	}
	// One spare byte: the read that finds EOF needs room.
	buf := make([]byte, 0, declared+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
