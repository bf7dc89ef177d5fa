package omq

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"

	"github.com/snodebox/snodebox/netstack/omq/zmtp"
)

// Message is an incoming command or request.
type Message struct {
	Command string
	Data    [][]byte
	// PubKey is the caller's CURVE key (zero over a NULL connection).
	PubKey [32]byte
	Auth   AuthLevel
	// ServiceNode: the caller is in the active set.
	ServiceNode bool
	conn        *serverConn
}

// Send sends a command back to the caller over the same connection (oxend
// pushes notify.block this way to a storage server that subscribed).
func (m *Message) Send(cmd string, data ...[]byte) error {
	return m.conn.c.Send(append([][]byte{[]byte(cmd)}, data...)...)
}

// RequestHandler answers a request with the reply's parts.
type RequestHandler func(ctx context.Context, m *Message) [][]byte

// CommandHandler runs a command that has no reply.
type CommandHandler func(ctx context.Context, m *Message)

// Category is a set of commands with one access requirement.
type Category struct {
	Access   Access
	Requests map[string]RequestHandler
	Commands map[string]CommandHandler
}

// Server serves categories to many peers: the ROUTER side of OxenMQ.
type Server struct {
	PublicKey, SecretKey [32]byte // CURVE identity (the node's X25519 key)
	Categories           map[string]Category
	// IsServiceNode reports whether a CURVE key is in the active set.
	IsServiceNode func(key [32]byte) bool
	// AuthFor gives a connection's level: by key for CURVE, for local
	// (unix socket, NULL) connections the admin level by default.
	AuthFor func(key [32]byte, local bool) AuthLevel
	// LocalSN: this node runs as a service node.
	LocalSN bool
	Log     *slog.Logger

	mu    sync.Mutex
	conns map[*serverConn]struct{}
	lns   []net.Listener
	wg    sync.WaitGroup
}

type serverConn struct {
	c     *zmtp.Conn
	key   [32]byte
	local bool
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// Serve accepts connections on ln until it is closed: CURVE on TCP, NULL
// on unix sockets (whose file permissions are the access control).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	local := ln.Addr().Network() == "unix"
	s.mu.Lock()
	s.lns = append(s.lns, ln)
	if s.conns == nil {
		s.conns = map[*serverConn]struct{}{}
	}
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				s.closeAll()
				s.wg.Wait()
				return nil
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(ctx, nc, local)
		}()
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.c.Close()
	}
}

func (s *Server) handle(ctx context.Context, nc net.Conn, local bool) {
	defer nc.Close()
	cfg := zmtp.Config{Mechanism: zmtp.Curve, Server: true, PublicKey: s.PublicKey, SecretKey: s.SecretKey, Metadata: zmtp.Metadata{"Socket-Type": "ROUTER"}}
	if local {
		cfg = zmtp.Config{Mechanism: zmtp.Null, Metadata: zmtp.Metadata{"Socket-Type": "ROUTER"}}
	}
	c, err := zmtp.Handshake(nc, cfg)
	if err != nil {
		s.log().Debug("omq handshake", "remote", nc.RemoteAddr(), "err", err)
		return
	}
	sc := &serverConn{c: c, key: c.ClientKey(), local: local}
	s.mu.Lock()
	s.conns[sc] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
	}()
	for {
		parts, err := c.Recv()
		if err != nil {
			return
		}
		s.dispatch(ctx, sc, parts)
	}
}

func (s *Server) authOf(sc *serverConn) AuthLevel {
	if s.AuthFor != nil {
		return s.AuthFor(sc.key, sc.local)
	}
	if sc.local {
		return AuthAdmin
	}
	return AuthBasic
}

func (s *Server) dispatch(ctx context.Context, sc *serverConn, parts [][]byte) {
	if len(parts) == 0 {
		return
	}
	cmd := string(parts[0])
	data := parts[1:]
	switch cmd {
	case cmdHi:
		sc.c.Send([]byte(cmdHello))
		return
	case cmdReply, cmdHello, "BYE":
		return // replies on an incoming connection: not ours
	}
	cat, name, ok := splitCommand(cmd)
	var c Category
	var req RequestHandler
	var one CommandHandler
	if ok {
		c, ok = s.Categories[cat]
	}
	if ok {
		req = c.Requests[name]
		one = c.Commands[name]
		ok = req != nil || one != nil
	}
	refuse := func(code string) {
		if req != nil && len(data) > 0 {
			sc.c.Send([]byte(code), []byte(cmdReply), data[0])
		} else {
			sc.c.Send([]byte(code), parts[0])
		}
		s.log().Debug("omq refused", "command", cmd, "code", code)
	}
	if !ok {
		refuse(ErrUnknownCommand)
		return
	}
	m := &Message{Command: cmd, PubKey: sc.key, Auth: s.authOf(sc), conn: sc}
	if s.IsServiceNode != nil && sc.key != ([32]byte{}) {
		m.ServiceNode = s.IsServiceNode(sc.key)
	}
	switch {
	case m.Auth < c.Access.Auth:
		refuse(ErrForbidden)
		return
	case c.Access.LocalSN && !s.LocalSN:
		refuse(ErrNotAServiceNode)
		return
	case c.Access.RemoteSN && !m.ServiceNode:
		refuse(ErrForbiddenSN)
		return
	case req != nil && len(data) == 0:
		refuse(ErrNoReplyTag)
		return
	}
	if req != nil {
		tag := data[0]
		m.Data = data[1:]
		// Handlers may take their time (a storage_cc waits for fsync):
		// one goroutine per request keeps the connection reading.
		go func() {
			reply := req(ctx, m)
			sc.c.Send(append([][]byte{[]byte(cmdReply), tag}, reply...)...)
		}()
		return
	}
	m.Data = data
	go one(ctx, m)
}
