package onion

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// SetLimits shortens the hop and proxy timeouts and the proxy slots so
// tests can reach the 504 and 503 paths without waiting 25–30 s.
func SetLimits(h *Handler, hop, proxyTimeout time.Duration, proxySlots int) {
	h.hopTimeout = hop
	h.proxy = newProxy(h.cfg.AllowPrivateProxy, proxyTimeout, proxySlots)
}

// OfflineProxy makes every proxy dial fail before resolving anything, so
// fuzzing cannot send traffic (or DNS queries) off the machine.
func OfflineProxy(h *Handler) {
	tr := h.proxy.client.Transport.(*http.Transport)
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, errors.New("proxy dialing disabled in this test")
	}
}
