package onion

import "time"

// SetLimits shortens the hop and proxy timeouts and the proxy slots so
// tests can reach the 504 and 503 paths without waiting 25–30 s.
func SetLimits(h *Handler, hop, proxyTimeout time.Duration, proxySlots int) {
	h.hopTimeout = hop
	h.proxy = newProxy(h.cfg.AllowPrivateProxy, proxyTimeout, proxySlots)
}
