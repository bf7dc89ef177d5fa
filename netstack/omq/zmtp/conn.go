package zmtp

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
)

// Config is one side of a connection.
type Config struct {
	Mechanism string // Null or Curve
	Server    bool   // CURVE: the side that holds the long-term key others know
	// CURVE keys (X25519): ours, and for a client the server's.
	PublicKey, SecretKey [32]byte
	ServerKey            [32]byte
	// Authorize, on a CURVE server, admits a client by its long-term
	// public key (nil admits everyone).
	Authorize func(clientKey [32]byte) error
	// Metadata goes in our READY (or INITIATE): Socket-Type at least.
	Metadata Metadata
	// MaxFrame bounds a received frame (default MaxFrame).
	MaxFrame int
	// HandshakeTimeout bounds the handshake (default 10 s).
	HandshakeTimeout time.Duration
}

// Conn is a connection after the handshake: multipart messages both ways.
type Conn struct {
	nc   net.Conn
	r    *bufio.Reader
	cfg  Config
	peer Metadata
	// ClientKey is, on a CURVE server, the client's long-term public key.
	clientKey [32]byte

	wmu  sync.Mutex
	wbuf []byte

	curve      bool
	shared     [32]byte // precomputed box key of the short-term pair
	sendPrefix string
	recvPrefix string
	sendNonce  uint64
	recvNonce  uint64
}

// Errors a handshake ends in.
var (
	ErrMechanism = errors.New("zmtp: security mechanisms do not match")
	ErrRefused   = errors.New("zmtp: peer refused the handshake")
	ErrAuth      = errors.New("zmtp: CURVE authentication failed")
)

// Handshake runs the greeting and the mechanism's handshake on nc.
func Handshake(nc net.Conn, cfg Config) (*Conn, error) {
	if cfg.Mechanism == "" {
		cfg.Mechanism = Null
	}
	if cfg.Mechanism != Null && cfg.Mechanism != Curve {
		return nil, fmt.Errorf("zmtp: mechanism %q not supported", cfg.Mechanism)
	}
	to := cfg.HandshakeTimeout
	if to == 0 {
		to = 10 * time.Second
	}
	nc.SetDeadline(time.Now().Add(to))
	defer nc.SetDeadline(time.Time{})
	c := &Conn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), cfg: cfg}
	if _, err := nc.Write(greeting(cfg.Mechanism, cfg.Server && cfg.Mechanism == Curve)); err != nil {
		return nil, fmt.Errorf("zmtp greeting: %w", err)
	}
	g, err := readGreeting(c.r)
	if err != nil {
		return nil, err
	}
	if g.mechanism != cfg.Mechanism {
		return nil, fmt.Errorf("%w: we use %s, the peer %s", ErrMechanism, cfg.Mechanism, g.mechanism)
	}
	// The greeting's as-server flag is not checked: libzmq sends 0 from
	// CURVE servers too; the handshake itself fails if both sides play
	// the same role.
	switch {
	case cfg.Mechanism == Null:
		err = c.nullHandshake()
	case cfg.Server:
		err = c.curveServer()
	default:
		err = c.curveClient()
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// PeerMetadata is what the peer sent in its READY/INITIATE.
func (c *Conn) PeerMetadata() Metadata { return c.peer }

// ClientKey is the CURVE client's long-term key (server side).
func (c *Conn) ClientKey() [32]byte { return c.clientKey }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

func (c *Conn) writeRaw(b []byte) error {
	_, err := c.nc.Write(b)
	return err
}

func (c *Conn) sendCommand(name string, data ...[]byte) error {
	return c.writeRaw(AppendFrame(nil, false, true, commandBody(name, data...)))
}

func (c *Conn) readCommand() (command, error) {
	f, err := ReadFrame(c.r, c.cfg.MaxFrame)
	if err != nil {
		return command{}, err
	}
	if !f.Command {
		return command{}, errors.New("zmtp: a message before the handshake finished")
	}
	cmd, err := parseCommand(f.Body)
	if err != nil {
		return cmd, err
	}
	if cmd.name == "ERROR" {
		reason := ""
		if len(cmd.data) > 0 && int(cmd.data[0]) <= len(cmd.data)-1 {
			reason = string(cmd.data[1 : 1+int(cmd.data[0])])
		}
		return cmd, fmt.Errorf("%w: %s", ErrRefused, reason)
	}
	return cmd, nil
}

func (c *Conn) sendError(reason string) {
	if len(reason) > 255 {
		reason = reason[:255]
	}
	c.sendCommand("ERROR", append([]byte{byte(len(reason))}, reason...))
}

func (c *Conn) nullHandshake() error {
	if err := c.sendCommand("READY", c.cfg.Metadata.Marshal()); err != nil {
		return err
	}
	cmd, err := c.readCommand()
	if err != nil {
		return err
	}
	if cmd.name != "READY" {
		return fmt.Errorf("zmtp: want READY, got %q", cmd.name)
	}
	c.peer, err = ParseMetadata(cmd.data)
	return err
}

// ---- CURVE (RFC 26) ----

func nonce(prefix string, tail []byte) *[24]byte {
	var n [24]byte
	copy(n[:], prefix)
	copy(n[len(prefix):], tail)
	return &n
}

func shortNonce(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func (c *Conn) curveClient() error {
	S := &c.cfg.ServerKey
	cpub, csec, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	c.sendNonce = 1
	hello := box.Seal(nil, make([]byte, 64), nonce("CurveZMQHELLO---", shortNonce(c.sendNonce)), S, csec)
	if err := c.sendCommand("HELLO", []byte{1, 0}, make([]byte, 72), cpub[:], shortNonce(c.sendNonce), hello); err != nil {
		return err
	}
	cmd, err := c.readCommand()
	if err != nil {
		return err
	}
	if cmd.name != "WELCOME" || len(cmd.data) != 16+144 {
		return fmt.Errorf("%w: want a 168-byte WELCOME, got %q (%d bytes)", ErrAuth, cmd.name, len(cmd.data))
	}
	w, ok := box.Open(nil, cmd.data[16:], nonce("WELCOME-", cmd.data[:16]), S, csec)
	if !ok {
		return fmt.Errorf("%w: WELCOME does not open with the server key we were given", ErrAuth)
	}
	var spub [32]byte
	copy(spub[:], w[:32])
	cookie := w[32:128]
	vn := random(16)
	vouch := box.Seal(nil, append(append([]byte{}, cpub[:]...), S[:]...), nonce("VOUCH---", vn), &spub, &c.cfg.SecretKey)
	c.sendNonce++
	inner := append(append(append([]byte{}, c.cfg.PublicKey[:]...), vn...), vouch...)
	inner = append(inner, c.cfg.Metadata.Marshal()...)
	init := box.Seal(nil, inner, nonce("CurveZMQINITIATE", shortNonce(c.sendNonce)), &spub, csec)
	if err := c.sendCommand("INITIATE", cookie, shortNonce(c.sendNonce), init); err != nil {
		return err
	}
	cmd, err = c.readCommand()
	if err != nil {
		return err
	}
	if cmd.name != "READY" || len(cmd.data) < 8+16 {
		return fmt.Errorf("%w: want READY, got %q", ErrAuth, cmd.name)
	}
	box.Precompute(&c.shared, &spub, csec)
	md, ok := box.OpenAfterPrecomputation(nil, cmd.data[8:], nonce("CurveZMQREADY---", cmd.data[:8]), &c.shared)
	if !ok {
		return fmt.Errorf("%w: READY does not open", ErrAuth)
	}
	c.recvNonce = binary.BigEndian.Uint64(cmd.data[:8])
	if c.peer, err = ParseMetadata(md); err != nil {
		return err
	}
	c.curve, c.sendPrefix, c.recvPrefix = true, "CurveZMQMESSAGEC", "CurveZMQMESSAGES"
	return nil
}

func (c *Conn) curveServer() error {
	cmd, err := c.readCommand()
	if err != nil {
		return err
	}
	if cmd.name != "HELLO" || len(cmd.data) != 2+72+32+8+80 {
		return fmt.Errorf("%w: want a 200-byte HELLO, got %q (%d bytes)", ErrAuth, cmd.name, len(cmd.data))
	}
	d := cmd.data
	if d[0] != 1 {
		return fmt.Errorf("%w: CURVE version %d.%d", ErrAuth, d[0], d[1])
	}
	var cpub [32]byte
	copy(cpub[:], d[74:106])
	helloNonce := d[106:114]
	plain, ok := box.Open(nil, d[114:], nonce("CurveZMQHELLO---", helloNonce), &cpub, &c.cfg.SecretKey)
	if !ok || !bytes.Equal(plain, make([]byte, 64)) {
		// A client that does not know our key: nothing is answered.
		return fmt.Errorf("%w: HELLO is not for this server's key", ErrAuth)
	}
	spub, ssec, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	var cookieKey [32]byte
	rand.Read(cookieKey[:])
	cn := random(16)
	cookie := append(cn, secretbox.Seal(nil, append(append([]byte{}, cpub[:]...), ssec[:]...), nonce("COOKIE--", cn), &cookieKey)...)
	wn := random(16)
	welcome := box.Seal(nil, append(append([]byte{}, spub[:]...), cookie...), nonce("WELCOME-", wn), &cpub, &c.cfg.SecretKey)
	if err := c.sendCommand("WELCOME", wn, welcome); err != nil {
		return err
	}
	cmd, err = c.readCommand()
	if err != nil {
		return err
	}
	if cmd.name != "INITIATE" || len(cmd.data) < 96+8+16+32+96 {
		return fmt.Errorf("%w: want INITIATE, got %q", ErrAuth, cmd.name)
	}
	d = cmd.data
	ck, ok := secretbox.Open(nil, d[16:96], nonce("COOKIE--", d[:16]), &cookieKey)
	if !ok || !bytes.Equal(ck[:32], cpub[:]) || !bytes.Equal(ck[32:], ssec[:]) {
		return fmt.Errorf("%w: bad cookie", ErrAuth)
	}
	box.Precompute(&c.shared, &cpub, ssec)
	inner, ok := box.OpenAfterPrecomputation(nil, d[104:], nonce("CurveZMQINITIATE", d[96:104]), &c.shared)
	if !ok || len(inner) < 32+16+80 {
		return fmt.Errorf("%w: INITIATE does not open", ErrAuth)
	}
	var client [32]byte
	copy(client[:], inner[:32])
	v, ok := box.Open(nil, inner[48:128], nonce("VOUCH---", inner[32:48]), &client, ssec)
	if !ok || !bytes.Equal(v[:32], cpub[:]) || !bytes.Equal(v[32:], c.cfg.PublicKey[:]) {
		return fmt.Errorf("%w: bad vouch", ErrAuth)
	}
	if c.cfg.Authorize != nil {
		if err := c.cfg.Authorize(client); err != nil {
			c.sendError(err.Error())
			return fmt.Errorf("%w: %v", ErrAuth, err)
		}
	}
	c.clientKey = client
	if c.peer, err = ParseMetadata(inner[128:]); err != nil {
		return err
	}
	c.recvNonce = binary.BigEndian.Uint64(d[96:104])
	c.sendNonce = 1
	ready := box.SealAfterPrecomputation(nil, c.cfg.Metadata.Marshal(), nonce("CurveZMQREADY---", shortNonce(c.sendNonce)), &c.shared)
	if err := c.sendCommand("READY", shortNonce(c.sendNonce), ready); err != nil {
		return err
	}
	c.curve, c.sendPrefix, c.recvPrefix = true, "CurveZMQMESSAGES", "CurveZMQMESSAGEC"
	return nil
}

// ---- messages ----

// Send writes one multipart message.
func (c *Conn) Send(parts ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	buf := c.wbuf[:0]
	for i, p := range parts {
		more := i < len(parts)-1
		if c.curve {
			c.sendNonce++
			flags := byte(0)
			if more {
				flags = 1
			}
			pt := make([]byte, 0, 1+len(p))
			pt = append(append(pt, flags), p...)
			sn := shortNonce(c.sendNonce)
			body := append(append([]byte("\x07MESSAGE"), sn...), box.SealAfterPrecomputation(nil, pt, nonce(c.sendPrefix, sn), &c.shared)...)
			buf = AppendFrame(buf, more, false, body)
		} else {
			buf = AppendFrame(buf, more, false, p)
		}
	}
	if len(parts) == 0 {
		return errors.New("zmtp: empty message")
	}
	c.wbuf = buf[:0]
	_, err := c.nc.Write(buf)
	return err
}

// Recv reads one multipart message. Commands the peer sends between
// messages (PING, for one) are answered or skipped.
func (c *Conn) Recv() ([][]byte, error) {
	var parts [][]byte
	for {
		f, err := ReadFrame(c.r, c.cfg.MaxFrame)
		if err != nil {
			return nil, err
		}
		more, data, cmd := f.More, f.Body, f.Command
		if c.curve {
			if cmd {
				return nil, errors.New("zmtp: unencrypted command after a CURVE handshake")
			}
			if len(data) < 8+8+17 || string(data[:8]) != "\x07MESSAGE" {
				return nil, errors.New("zmtp: malformed CURVE MESSAGE")
			}
			n := binary.BigEndian.Uint64(data[8:16])
			if n <= c.recvNonce {
				return nil, errors.New("zmtp: CURVE nonce replayed or out of order")
			}
			pt, ok := box.OpenAfterPrecomputation(nil, data[16:], nonce(c.recvPrefix, data[8:16]), &c.shared)
			if !ok {
				return nil, errors.New("zmtp: CURVE MESSAGE does not open")
			}
			c.recvNonce = n
			more, cmd, data = pt[0]&1 != 0, pt[0]&2 != 0, pt[1:]
		}
		if cmd {
			if err := c.handleCommand(data); err != nil {
				return nil, err
			}
			continue
		}
		parts = append(parts, data)
		if !more {
			return parts, nil
		}
	}
}

func (c *Conn) handleCommand(body []byte) error {
	cmd, err := parseCommand(body)
	if err != nil {
		return err
	}
	switch cmd.name {
	case "PING":
		// PONG echoes the context after the TTL (RFC 37 §2.6.1).
		ctx := []byte{}
		if len(cmd.data) > 2 {
			ctx = cmd.data[2:]
		}
		if c.curve {
			return nil // encrypted heartbeats are not sent by OxenMQ; skip
		}
		return c.sendCommand("PONG", ctx)
	case "PONG":
		return nil
	case "ERROR":
		return fmt.Errorf("%w: %s", ErrRefused, cmd.data)
	}
	return nil
}
