package zmtp

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/box"
)

// libzmq is the independent implementation: Debian's python3-zmq (make
// deps installs it). The system python, not a virtualenv's, has it.
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil {
			if exec.Command(path, "-c", "import zmq; assert zmq.has('curve')").Run() == nil {
				return path
			}
		}
	}
	t.Fatal("python3 with zmq (CURVE) not found: install python3-zmq (make deps)")
	return ""
}

func keypair(t testing.TB) (pub, sec [32]byte) {
	p, s, err := box.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return *p, *s
}

var sizes = []int{1, 200, 300, 70000, 1 << 20, 10 << 20}

func sizeList() string {
	var s []string
	for _, n := range sizes {
		s = append(s, fmt.Sprint(n))
	}
	return strings.Join(s, ",")
}

// A libzmq DEALER (CURVE client) talks to our server: every size echoes
// back intact, and our server knows the client's long-term key.
func TestLibzmqClientToOurServer(t *testing.T) {
	py := python(t)
	pub, sec := keypair(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	srvErr := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer nc.Close()
		c, err := Handshake(nc, Config{Mechanism: Curve, Server: true, PublicKey: pub, SecretKey: sec, Metadata: Metadata{"Socket-Type": "ROUTER"}})
		if err != nil {
			srvErr <- err
			return
		}
		got <- c.ClientKey()
		if c.PeerMetadata()["Socket-Type"] != "DEALER" {
			srvErr <- fmt.Errorf("peer metadata %v", c.PeerMetadata())
			return
		}
		for {
			m, err := c.Recv()
			if err != nil {
				srvErr <- nil
				return
			}
			if err := c.Send(m...); err != nil {
				srvErr <- err
				return
			}
		}
	}()
	out, err := exec.Command(py, "testdata/peer.py", "client", "tcp://"+ln.Addr().String(), hex.EncodeToString(pub[:]), sizeList()).CombinedOutput()
	if err != nil {
		t.Fatalf("libzmq client: %v\n%s", err, out)
	}
	for _, n := range sizes {
		if !strings.Contains(string(out), fmt.Sprintf("ok %d\n", n)) {
			t.Errorf("size %d did not echo:\n%s", n, out)
		}
	}
	ck := <-got
	if !strings.Contains(string(out), "clientkey "+hex.EncodeToString(ck[:])) {
		t.Errorf("server saw client key %x; the client says:\n%s", ck, out)
	}
	if err := <-srvErr; err != nil {
		t.Fatal(err)
	}
}

// startLibzmqServer runs a libzmq ROUTER (CURVE server) echoing messages.
func startLibzmqServer(t *testing.T) (addr string, key [32]byte) {
	t.Helper()
	py := python(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr = ln.Addr().String()
	ln.Close()
	cmd := exec.Command(py, "testdata/peer.py", "server", "tcp://"+addr)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "serverkey ") {
		t.Fatalf("libzmq server: %q %v %s", line, err, stderr.String())
	}
	b, _ := hex.DecodeString(strings.TrimSpace(strings.TrimPrefix(line, "serverkey ")))
	copy(key[:], b)
	return addr, key
}

// Our client talks to a libzmq ROUTER: every size echoes back.
func TestOurClientToLibzmqServer(t *testing.T) {
	addr, key := startLibzmqServer(t)
	pub, sec := keypair(t)
	nc := dialRetry(t, addr)
	defer nc.Close()
	c, err := Handshake(nc, Config{Mechanism: Curve, PublicKey: pub, SecretKey: sec, ServerKey: key, Metadata: Metadata{"Socket-Type": "DEALER"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.PeerMetadata()["Socket-Type"] != "ROUTER" {
		t.Errorf("peer metadata %v", c.PeerMetadata())
	}
	for _, n := range sizes {
		body := bytes.Repeat([]byte{0x5a}, n)
		if err := c.Send([]byte("echo"), body); err != nil {
			t.Fatal(err)
		}
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := c.Recv()
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if len(m) != 2 || string(m[0]) != "echo" || !bytes.Equal(m[1], body) {
			t.Fatalf("size %d: got %d parts", n, len(m))
		}
	}
	c.Send([]byte("quit"))
}

// A client with the wrong server key gets nowhere, both ways round.
func TestWrongServerKeyIsRefused(t *testing.T) {
	addr, _ := startLibzmqServer(t)
	pub, sec := keypair(t)
	wrong, _ := keypair(t)
	nc := dialRetry(t, addr)
	defer nc.Close()
	if _, err := Handshake(nc, Config{Mechanism: Curve, PublicKey: pub, SecretKey: sec, ServerKey: wrong, HandshakeTimeout: 3 * time.Second}); err == nil {
		t.Fatal("handshake with a libzmq server under the wrong key succeeded")
	}

	// libzmq client with a wrong key for our server: we refuse the HELLO.
	py := python(t)
	spub, ssec := keypair(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	res := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			res <- err
			return
		}
		defer nc.Close()
		_, err = Handshake(nc, Config{Mechanism: Curve, Server: true, PublicKey: spub, SecretKey: ssec})
		res <- err
	}()
	out, err := exec.Command(py, "testdata/peer.py", "client", "tcp://"+ln.Addr().String(), hex.EncodeToString(wrong[:]), "1").CombinedOutput()
	if err == nil {
		t.Fatalf("libzmq client with the wrong server key got an answer:\n%s", out)
	}
	if err := <-res; !errors.Is(err, ErrAuth) {
		t.Fatalf("our server: %v, want ErrAuth", err)
	}
}

// dialRetry dials the libzmq server, which binds a moment after it starts.
func dialRetry(t *testing.T, addr string) net.Conn {
	t.Helper()
	var err error
	for i := 0; i < 50; i++ {
		var nc net.Conn
		if nc, err = net.Dial("tcp", addr); err == nil {
			return nc
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}
