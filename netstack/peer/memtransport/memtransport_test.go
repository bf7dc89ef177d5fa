package memtransport

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

func node(b byte) registry.Node {
	var n registry.Node
	n.Ed25519[0] = b
	return n
}

func TestCallDeliversWithCallerKeyAndCopies(t *testing.T) {
	net := NewNetwork()
	a, b := net.Join(node(1).Ed25519), net.Join(node(2).Ed25519)
	var gotFrom ed25519.PublicKey
	b.Handle(peer.CmdPing, func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
		gotFrom = from
		body[0] = 'X' // must not reach the caller's buffer
		return peer.Reply{Status: http.StatusOK, Body: append([]byte("pong:"), body...)}
	})
	in := []byte("hi")
	r, err := a.Call(context.Background(), node(2), peer.CmdPing, in)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || string(r.Body) != "pong:Xi" {
		t.Fatalf("reply %d %q", r.Status, r.Body)
	}
	if string(in) != "hi" {
		t.Fatalf("handler changed the caller's body: %q", in)
	}
	if len(gotFrom) != 32 || gotFrom[0] != 1 {
		t.Fatalf("from = %x, want caller's key", gotFrom)
	}
	if b.Served(peer.CmdPing) != 1 {
		t.Fatalf("served = %d", b.Served(peer.CmdPing))
	}
}

func TestCallFailures(t *testing.T) {
	net := NewNetwork()
	a, b := net.Join(node(1).Ed25519), net.Join(node(2).Ed25519)
	block := make(chan struct{})
	defer close(block)
	b.Handle("slow", func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
		<-block
		return peer.Reply{Status: 200}
	})

	t.Run("unknown node is unreachable", func(t *testing.T) {
		_, err := a.Call(context.Background(), node(9), peer.CmdPing, nil)
		if !errors.Is(err, peer.ErrUnreachable) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("down node is unreachable, back up answers", func(t *testing.T) {
		net.SetDown(node(2).Ed25519, true)
		if _, err := a.Call(context.Background(), node(2), "slow", nil); !errors.Is(err, peer.ErrUnreachable) {
			t.Fatalf("err = %v", err)
		}
		net.SetDown(node(2).Ed25519, false)
		r, err := a.Call(context.Background(), node(2), "nope", nil)
		if err != nil || r.Status != http.StatusNotFound {
			t.Fatalf("reply %v err %v", r, err)
		}
	})
	t.Run("deadline is a timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		if _, err := a.Call(ctx, node(2), "slow", nil); !errors.Is(err, peer.ErrTimeout) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("broken handlers answer 500", func(t *testing.T) {
		b.Handle("panics", func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
			panic("bug")
		})
		b.Handle("nostatus", func(ctx context.Context, from ed25519.PublicKey, body []byte) peer.Reply {
			return peer.Reply{}
		})
		for _, cmd := range []string{"panics", "nostatus"} {
			r, err := a.Call(context.Background(), node(2), cmd, nil)
			if err != nil || r.Status != http.StatusInternalServerError {
				t.Fatalf("%s: reply %v err %v", cmd, r, err)
			}
		}
	})
	t.Run("unknown caller is refused", func(t *testing.T) {
		b.SetKnown(func(ed ed25519.PublicKey) bool { return ed[0] == 7 })
		defer b.SetKnown(nil)
		r, err := a.Call(context.Background(), node(2), "slow", nil)
		if err != nil || r.Status != http.StatusForbidden {
			t.Fatalf("reply %v err %v", r, err)
		}
	})
	t.Run("left node is unreachable", func(t *testing.T) {
		net.Leave(node(2).Ed25519)
		if _, err := a.Call(context.Background(), node(2), "slow", nil); !errors.Is(err, peer.ErrUnreachable) {
			t.Fatalf("err = %v", err)
		}
	})
}
