// Package nodetest is what tests and benchmarks of several packages need to
// run nodes on this machine: free loopback ports, an in-process node that
// serves until the test ends, and polling for a condition.
//
// It only ever listens on loopback.
package nodetest

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/node"
)

// FreePort asks the kernel for an unused loopback TCP port. The port is
// free when it returns; whoever listens on it next gets it.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr is FreePort as a 127.0.0.1:port listen address.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
}

// Start opens a node with cfg, binds its HTTPS listener and runs it until
// the test ends; then it is stopped and closed. An empty DataDir is a
// temporary directory, an empty Listen a free loopback port, a nil Logger
// discards. The listener is bound when Start returns, so requests wait in
// its backlog rather than failing; wait for whatever readiness the test
// needs (RPC answering, a swarm formed) with Until.
func Start(tb testing.TB, cfg node.Config) *node.Node {
	tb.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	if cfg.Listen == "" {
		cfg.Listen = FreeAddr(tb)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n, err := node.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := n.Listen(); err != nil {
		n.Close()
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	tb.Cleanup(func() {
		cancel()
		<-done
		n.Close()
	})
	return n
}

// Until polls cond until it holds. The bound only keeps a broken build
// from hanging the test run; it is not a speed requirement.
func Until(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("gave up waiting for: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
