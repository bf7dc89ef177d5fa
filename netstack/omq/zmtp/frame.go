// Package zmtp speaks ZMTP 3.x (ZeroMQ's wire protocol, RFC 23/37) with the
// NULL and CURVE (CurveZMQ, RFC 26) security mechanisms: the transport
// OxenMQ runs over. Pure Go (snoded is a static binary, no cgo); the
// crypto is golang.org/x/crypto/nacl/box, the same construction libsodium's
// crypto_box is. It is tested against libzmq itself (python3-zmq).
package zmtp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame flags (RFC 23 §2.3).
const (
	flagMore    = 0x01
	flagLong    = 0x02
	flagCommand = 0x04
)

// MaxFrame bounds one frame a peer may send: bigger frames are refused
// before any of them is read into memory.
const MaxFrame = 64 << 20

// Frame is one ZMTP frame.
type Frame struct {
	More    bool
	Command bool
	Body    []byte
}

// ErrFrameTooBig means a peer announced a frame over MaxFrame.
var ErrFrameTooBig = errors.New("zmtp: frame too big")

// ReadFrame reads one frame.
func ReadFrame(r *bufio.Reader, max int) (Frame, error) {
	var f Frame
	flags, err := r.ReadByte()
	if err != nil {
		return f, err
	}
	if flags&^(flagMore|flagLong|flagCommand) != 0 {
		return f, fmt.Errorf("zmtp: reserved frame flag bits set (%#x)", flags)
	}
	var size uint64
	if flags&flagLong != 0 {
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return f, err
		}
		size = binary.BigEndian.Uint64(b[:])
	} else {
		b, err := r.ReadByte()
		if err != nil {
			return f, err
		}
		size = uint64(b)
	}
	if max <= 0 {
		max = MaxFrame
	}
	if size > uint64(max) {
		return f, fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooBig, size, max)
	}
	f.More = flags&flagMore != 0
	f.Command = flags&flagCommand != 0
	if f.Command && f.More {
		return f, errors.New("zmtp: command frame with MORE set")
	}
	f.Body = make([]byte, size)
	if _, err := io.ReadFull(r, f.Body); err != nil {
		return f, err
	}
	return f, nil
}

// AppendFrame appends the wire form of a frame.
func AppendFrame(dst []byte, more, command bool, body []byte) []byte {
	var flags byte
	if more {
		flags |= flagMore
	}
	if command {
		flags |= flagCommand
	}
	if len(body) > 255 {
		flags |= flagLong
		dst = append(dst, flags)
		dst = binary.BigEndian.AppendUint64(dst, uint64(len(body)))
	} else {
		dst = append(dst, flags, byte(len(body)))
	}
	return append(dst, body...)
}

// command is a ZMTP command: a name and its data.
type command struct {
	name string
	data []byte
}

func parseCommand(body []byte) (command, error) {
	if len(body) < 1 || int(body[0]) > len(body)-1 || body[0] == 0 {
		return command{}, errors.New("zmtp: malformed command")
	}
	n := int(body[0])
	return command{name: string(body[1 : 1+n]), data: body[1+n:]}, nil
}

func commandBody(name string, data ...[]byte) []byte {
	b := append([]byte{byte(len(name))}, name...)
	for _, d := range data {
		b = append(b, d...)
	}
	return b
}

// Metadata is a READY/INITIATE property list (RFC 23 §2.4.2).
type Metadata map[string]string

// Marshal writes the properties in a stable order.
func (m Metadata) Marshal() []byte {
	var b []byte
	for _, k := range []string{"Socket-Type", "Identity", "Routing-Id", "User-Id"} {
		if v, ok := m[k]; ok {
			b = appendProp(b, k, v)
		}
	}
	for k, v := range m {
		switch k {
		case "Socket-Type", "Identity", "Routing-Id", "User-Id":
			continue
		}
		b = appendProp(b, k, v)
	}
	return b
}

func appendProp(b []byte, k, v string) []byte {
	b = append(b, byte(len(k)))
	b = append(b, k...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// ParseMetadata reads a property list.
func ParseMetadata(b []byte) (Metadata, error) {
	m := Metadata{}
	for len(b) > 0 {
		n := int(b[0])
		if n == 0 || len(b) < 1+n+4 {
			return nil, errors.New("zmtp: malformed metadata")
		}
		name := string(b[1 : 1+n])
		vl := binary.BigEndian.Uint32(b[1+n:])
		b = b[1+n+4:]
		if uint64(vl) > uint64(len(b)) {
			return nil, errors.New("zmtp: malformed metadata value")
		}
		m[name] = string(b[:vl])
		b = b[vl:]
	}
	return m, nil
}
