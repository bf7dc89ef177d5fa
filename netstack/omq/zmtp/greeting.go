package zmtp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Mechanisms.
const (
	Null  = "NULL"
	Curve = "CURVE"
)

const greetingLen = 64

// greeting is the 64-byte ZMTP 3.1 greeting (RFC 37 §2.2).
func greeting(mechanism string, asServer bool) []byte {
	g := make([]byte, greetingLen)
	g[0], g[9] = 0xff, 0x7f
	g[10], g[11] = 3, 1
	copy(g[12:32], mechanism)
	if asServer {
		g[32] = 1
	}
	return g
}

type peerGreeting struct {
	major, minor byte
	mechanism    string
}

func readGreeting(r io.Reader) (peerGreeting, error) {
	var g [greetingLen]byte
	var p peerGreeting
	if _, err := io.ReadFull(r, g[:10]); err != nil {
		return p, fmt.Errorf("zmtp greeting: %w", err)
	}
	if g[0] != 0xff || g[9]&1 != 1 {
		return p, errors.New("zmtp greeting: not a ZMTP 3 peer")
	}
	if _, err := io.ReadFull(r, g[10:]); err != nil {
		return p, fmt.Errorf("zmtp greeting: %w", err)
	}
	p.major, p.minor = g[10], g[11]
	if p.major < 3 {
		return p, fmt.Errorf("zmtp greeting: version %d.%d, want 3.x", p.major, p.minor)
	}
	p.mechanism = string(bytes.TrimRight(g[12:32], "\x00"))
	// g[32] (as-server) is not read: libzmq sends 0 from CURVE servers too.
	return p, nil
}
