package zmtp

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"testing"
	"time"
)

func pipePair(t *testing.T, server, client Config) (*Conn, *Conn, error, error) {
	t.Helper()
	// Real sockets: both sides write their greeting before reading, which
	// net.Pipe's unbuffered writes would deadlock.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := Handshake(a, server)
		ch <- res{c, err}
	}()
	cc, cerr := Handshake(b, client)
	r := <-ch
	if cerr != nil || r.err != nil {
		a.Close()
		b.Close()
	}
	return r.c, cc, r.err, cerr
}

func TestNullAndCurveBetweenOurselves(t *testing.T) {
	spub, ssec := keypair(t)
	cpub, csec := keypair(t)
	for _, tc := range []struct {
		name   string
		server Config
		client Config
	}{
		{"null", Config{Metadata: Metadata{"Socket-Type": "ROUTER"}}, Config{Metadata: Metadata{"Socket-Type": "DEALER", "X-Snode": "1"}}},
		{"curve", Config{Mechanism: Curve, Server: true, PublicKey: spub, SecretKey: ssec, Metadata: Metadata{"Socket-Type": "ROUTER"}},
			Config{Mechanism: Curve, PublicKey: cpub, SecretKey: csec, ServerKey: spub, Metadata: Metadata{"Socket-Type": "DEALER", "X-Snode": "1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c, serr, cerr := pipePair(t, tc.server, tc.client)
			if serr != nil || cerr != nil {
				t.Fatalf("handshake: server %v, client %v", serr, cerr)
			}
			if s.PeerMetadata()["X-Snode"] != "1" || c.PeerMetadata()["Socket-Type"] != "ROUTER" {
				t.Errorf("metadata: %v / %v", s.PeerMetadata(), c.PeerMetadata())
			}
			if tc.name == "curve" && s.ClientKey() != cpub {
				t.Error("server does not know the client's key")
			}
			go func() {
				c.Send([]byte("sn.ping"), []byte("tag"), bytes.Repeat([]byte("x"), 100000))
				c.Send([]byte("one"))
			}()
			m, err := s.Recv()
			if err != nil || len(m) != 3 || string(m[0]) != "sn.ping" || len(m[2]) != 100000 {
				t.Fatalf("recv: %d parts, %v", len(m), err)
			}
			if m, err := s.Recv(); err != nil || len(m) != 1 || string(m[0]) != "one" {
				t.Fatalf("second message: %q %v", m, err)
			}
		})
	}
}

func TestCurveAuthorizeRefusesWithAReason(t *testing.T) {
	spub, ssec := keypair(t)
	cpub, csec := keypair(t)
	_, _, serr, cerr := pipePair(t,
		Config{Mechanism: Curve, Server: true, PublicKey: spub, SecretKey: ssec, Authorize: func([32]byte) error { return errors.New("not a service node") }},
		Config{Mechanism: Curve, PublicKey: cpub, SecretKey: csec, ServerKey: spub})
	if !errors.Is(serr, ErrAuth) || !errors.Is(cerr, ErrRefused) {
		t.Fatalf("server %v, client %v", serr, cerr)
	}
}

func TestMechanismMismatch(t *testing.T) {
	spub, ssec := keypair(t)
	_, _, serr, cerr := pipePair(t, Config{Mechanism: Curve, Server: true, PublicKey: spub, SecretKey: ssec, HandshakeTimeout: time.Second}, Config{Mechanism: Null, HandshakeTimeout: time.Second})
	if !errors.Is(serr, ErrMechanism) || !errors.Is(cerr, ErrMechanism) {
		t.Fatalf("server %v, client %v", serr, cerr)
	}
}

func TestFrames(t *testing.T) {
	var b []byte
	b = AppendFrame(b, true, false, []byte("a"))
	b = AppendFrame(b, false, false, bytes.Repeat([]byte("b"), 300))
	r := bufio.NewReader(bytes.NewReader(b))
	f1, err := ReadFrame(r, 0)
	if err != nil || !f1.More || string(f1.Body) != "a" {
		t.Fatalf("short frame %+v %v", f1, err)
	}
	f2, err := ReadFrame(r, 0)
	if err != nil || f2.More || len(f2.Body) != 300 || b[3] != flagLong {
		t.Fatalf("long frame %+v %v", f2, err)
	}
	big := []byte{flagLong, 0, 0, 0, 0, 0x10, 0, 0, 0}
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(big)), 1<<20); !errors.Is(err, ErrFrameTooBig) {
		t.Errorf("a 256 MiB frame: %v", err)
	}
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader([]byte{0x80, 1, 0})), 0); err == nil {
		t.Error("reserved flag accepted")
	}
	md := Metadata{"Socket-Type": "DEALER", "Identity": ""}
	got, err := ParseMetadata(md.Marshal())
	if err != nil || got["Socket-Type"] != "DEALER" || len(got) != 2 {
		t.Errorf("metadata round trip %v %v", got, err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrame(nil, true, false, []byte("hello")))
	f.Add(AppendFrame(nil, false, true, commandBody("READY", Metadata{"Socket-Type": "ROUTER"}.Marshal())))
	f.Add([]byte{flagLong, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ReadFrame(bufio.NewReader(bytes.NewReader(b)), 1<<16)
		if err == nil && fr.Command {
			if cmd, err := parseCommand(fr.Body); err == nil && cmd.name == "READY" {
				ParseMetadata(cmd.data)
			}
		}
	})
}

// The CURVE server side of the handshake takes anything a client sends
// without panicking, and admits none of it.
func FuzzCurveServerHandshake(f *testing.F) {
	spub, ssec := [32]byte{1}, [32]byte{2}
	f.Add(AppendFrame(nil, false, true, commandBody("HELLO", []byte{1, 0}, make([]byte, 72+32+8+80))))
	f.Add(AppendFrame(nil, false, true, commandBody("INITIATE", make([]byte, 300))))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, c := net.Pipe()
		defer a.Close()
		defer c.Close()
		go func() {
			c.Write(greeting(Curve, false))
			c.Write(b)
			c.Close()
		}()
		go func() { // drain what the server writes
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
		if _, err := Handshake(a, Config{Mechanism: Curve, Server: true, PublicKey: spub, SecretKey: ssec, HandshakeTimeout: time.Second}); err == nil {
			t.Fatal("random bytes completed a CURVE handshake")
		}
	})
}

// BenchmarkCurveHandshake: one CURVE handshake (client and server, both in
// this process, over loopback TCP): what a new peer connection costs.
func BenchmarkCurveHandshake(b *testing.B) {
	spub, ssec := keypair(b)
	cpub, csec := keypair(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				Handshake(nc, Config{Mechanism: Curve, Server: true, PublicKey: spub, SecretKey: ssec})
				nc.Close()
			}()
		}
	}()
	b.ResetTimer()
	for range b.N {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Handshake(nc, Config{Mechanism: Curve, PublicKey: cpub, SecretKey: csec, ServerKey: spub}); err != nil {
			b.Fatal(err)
		}
		nc.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}
