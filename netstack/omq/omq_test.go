package omq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/box"
)

func testServer(t *testing.T) (*Server, [32]byte) {
	p, s, err := box.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notified := make(chan string, 4)
	srv := &Server{
		PublicKey: *p, SecretKey: *s, LocalSN: true,
		Categories: map[string]Category{
			"test": {Access: Access{Auth: AuthNone}, Requests: map[string]RequestHandler{
				"echo": func(ctx context.Context, m *Message) [][]byte { return m.Data },
				"slow": func(ctx context.Context, m *Message) [][]byte { time.Sleep(2 * time.Second); return nil },
				"subscribe": func(ctx context.Context, m *Message) [][]byte {
					go func() { time.Sleep(50 * time.Millisecond); m.Send("notify.block", []byte("123")) }()
					return [][]byte{[]byte("OK")}
				},
			}, Commands: map[string]CommandHandler{
				"note": func(ctx context.Context, m *Message) { notified <- string(m.Data[0]) },
			}},
			"admin": {Access: Access{Auth: AuthAdmin}, Requests: map[string]RequestHandler{
				"secret": func(ctx context.Context, m *Message) [][]byte { return [][]byte{[]byte("42")} },
			}},
			"sn": {Access: Access{Auth: AuthNone, RemoteSN: true}, Requests: map[string]RequestHandler{
				"data": func(ctx context.Context, m *Message) [][]byte { return [][]byte{[]byte("stored")} },
			}},
		},
		IsServiceNode: func([32]byte) bool { return false },
	}
	return srv, *p
}

func serve(t *testing.T, srv *Server, network, addr string) net.Listener {
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln
}

func TestRequestsCommandsAndRefusals(t *testing.T) {
	srv, key := testServer(t)
	tcp := serve(t, srv, "tcp", "127.0.0.1:0")
	sock := filepath.Join(t.TempDir(), "omq.sock")
	serve(t, srv, "unix", sock)
	got := make(chan string, 1)
	cl := &Client{Timeout: time.Second, Handlers: map[string]func([][]byte){"notify.block": func(d [][]byte) { got <- string(d[0]) }}}
	defer cl.Close()
	ctx := context.Background()
	curve := Address{Network: "tcp", Addr: tcp.Addr().String(), ServerKey: key}
	ipc := Address{Network: "unix", Addr: sock}

	r, err := cl.Request(ctx, curve, "test.echo", []byte("a"), []byte("b"))
	if err != nil || len(r) != 2 || string(r[0]) != "a" || string(r[1]) != "b" {
		t.Fatalf("echo: %q %v", r, err)
	}
	// Admin over CURVE is refused (basic level); over the unix socket the
	// local caller is admin.
	if _, err := cl.Request(ctx, curve, "admin.secret"); !isRemote(err, ErrForbidden) {
		t.Errorf("admin over curve: %v", err)
	}
	if r, err := cl.Request(ctx, ipc, "admin.secret"); err != nil || string(r[0]) != "42" {
		t.Errorf("admin over ipc: %q %v", r, err)
	}
	if _, err := cl.Request(ctx, curve, "sn.data"); !isRemote(err, ErrForbiddenSN) {
		t.Errorf("sn.data from a non-SN: %v", err)
	}
	srv.IsServiceNode = func(k [32]byte) bool { return k == cl.PublicKey }
	if r, err := cl.Request(ctx, curve, "sn.data"); err != nil || string(r[0]) != "stored" {
		t.Errorf("sn.data from an active SN: %q %v", r, err)
	}
	srv.LocalSN = false
	srv.Categories["local"] = Category{Access: Access{LocalSN: true}, Requests: map[string]RequestHandler{"x": func(context.Context, *Message) [][]byte { return nil }}}
	if _, err := cl.Request(ctx, curve, "local.x"); !isRemote(err, ErrNotAServiceNode) {
		t.Errorf("local-SN command on a non-SN: %v", err)
	}
	if _, err := cl.Request(ctx, curve, "test.slow"); !errors.Is(err, ErrTimeout) {
		t.Errorf("slow: %v, want a timeout", err)
	}
	// A server-pushed command reaches the client's handler.
	if _, err := cl.Request(ctx, ipc, "test.subscribe"); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if b != "123" {
			t.Errorf("notify.block %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Error("notify.block never arrived")
	}
}

func isRemote(err error, code string) bool {
	var re *RemoteError
	return errors.As(err, &re) && re.Code == code
}

func TestReconnectAfterServerRestart(t *testing.T) {
	srv, key := testServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	cl := &Client{Timeout: time.Second}
	defer cl.Close()
	a := Address{Network: "tcp", Addr: addr, ServerKey: key}
	if _, err := cl.Request(context.Background(), a, "test.echo", []byte("1")); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if _, err := cl.Request(context.Background(), a, "test.echo", []byte("2")); err == nil {
		t.Fatal("request to a stopped server succeeded")
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go srv.Serve(ctx2, ln2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := cl.Request(context.Background(), a, "test.echo", []byte("3"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A libzmq DEALER speaking OxenMQ's format gets the same answers.
func TestLibzmqDealerToOurServer(t *testing.T) {
	py := ""
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import zmq").Run() == nil {
			py = path
			break
		}
	}
	if py == "" {
		t.Fatal("python3 with zmq not found: install python3-zmq (make deps)")
	}
	srv, key := testServer(t)
	ln := serve(t, srv, "tcp", "127.0.0.1:0")
	out, err := exec.Command(py, "testdata/dealer.py", "tcp://"+ln.Addr().String(), hex.EncodeToString(key[:])).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("libzmq dealer: %v\n%s", err, out)
	}
}
