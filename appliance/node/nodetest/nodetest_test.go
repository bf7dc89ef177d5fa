package nodetest

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

func TestFreeAddrIsLoopbackAndBindable(t *testing.T) {
	a, b := FreeAddr(t), FreeAddr(t)
	for _, addr := range []string{a, b} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("FreeAddr = %q (%v), want 127.0.0.1:port", addr, err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on the free address %s: %v", addr, err)
		}
		ln.Close()
	}
}

func TestStartServesUntilTheTestEnds(t *testing.T) {
	var addr string
	t.Run("running", func(t *testing.T) {
		n := Start(t, node.Config{})
		addr = n.Self.HTTPSAddr()
		cl := &rpcclient.Client{HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
		var status int
		Until(t, "info answered", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			status, _, _ = cl.Do(ctx, "https://"+addr, "info", rpcclient.Info())
			return status == http.StatusOK
		})
		if n.Swarm == nil || n.Store == nil {
			t.Fatal("node started without its services")
		}
	})
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("node still listening on %s after its test ended", addr)
	}
}

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	Until(t, "third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}
}
