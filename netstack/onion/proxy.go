package onion

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// errForbiddenTarget is a proxy destination that resolved to an address a
// public node must not reach on a client's behalf.
var errForbiddenTarget = errors.New("proxy target address not allowed")

// proxy forwards §8.3 case-2 layers to HTTP(S) servers.
type proxy struct {
	client  *http.Client
	slots   chan struct{}
	timeout time.Duration
}

func newProxy(allowPrivate bool, timeout time.Duration, inFlight int) *proxy {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		// Checked on the socket's resolved address, after DNS: a name that
		// resolves to a public address when filtered and to 127.0.0.1 when
		// dialled (DNS rebinding) is still refused.
		d.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", errForbiddenTarget, address)
			}
			if !PublicAddr(ap.Addr()) {
				return fmt.Errorf("%w: %s", errForbiddenTarget, ap.Addr())
			}
			return nil
		}
	}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		Proxy:               nil, // never an environment proxy: the node is the proxy
		TLSHandshakeTimeout: 10 * time.Second,
		// The payload is already end-to-end encrypted for the server's
		// X25519 key; TLS here only hides metadata, and a board has no CA
		// bundle to verify against. The reference does not verify either.
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
	}
	return &proxy{
		client: &http.Client{
			Transport: tr,
			// The server's status goes back unchanged, redirects included.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		slots:   make(chan struct{}, inFlight),
		timeout: timeout,
	}
}

var extraBlocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking nets
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),  // NAT64 can embed any v4 address
	netip.MustParsePrefix("2002::/16"),     // 6to4 likewise
}

// PublicAddr reports whether a proxy may connect to ip by default: not
// loopback, link-local, private, unspecified, multicast or reserved.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsPrivate() || ip.IsUnspecified() {
		return false
	}
	for _, p := range extraBlocked {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// do POSTs the layer's whole plaintext to url and relays status and body;
// ok is false when the server was not reached or its answer was refused.
func (p *proxy) do(ctx context.Context, url string, payload []byte, log *slog.Logger) (res result, ok bool) {
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	default:
		return plain(http.StatusServiceUnavailable, "Too many proxy requests in flight"), false
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return plain(http.StatusBadGateway, "Failed to reach server"), false
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := p.client.Do(req)
	if err != nil {
		return p.failed(ctx, url, err, log), false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxProxyReply+1))
	if err != nil {
		return p.failed(ctx, url, err, log), false
	}
	if len(body) > MaxProxyReply {
		return plain(http.StatusBadGateway, "Server response too large"), false
	}
	return result{status: resp.StatusCode, body: body, ctype: resp.Header.Get("Content-Type")}, true
}

func (p *proxy) failed(ctx context.Context, url string, err error, log *slog.Logger) result {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return plain(http.StatusGatewayTimeout, "Request time out")
	case errors.Is(err, errForbiddenTarget):
		log.Info("refused onion proxy to a non-public address", "url", url, "err", err)
		return plain(http.StatusBadGateway, "Proxy target not allowed")
	}
	log.Debug("onion proxy failed", "url", url, "err", err)
	return plain(http.StatusBadGateway, "Failed to reach server")
}
