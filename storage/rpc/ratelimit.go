package rpc

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// limiter is the per-client-IP token bucket of spec §12: each IP may spend
// Burst requests at once, refilled at PerSecond; at most MaxClients IPs are
// tracked and, when that table is full of active clients, new IPs are
// limited (as the reference does) rather than letting memory grow.
type limiter struct {
	cfg         RateLimit
	mu          sync.Mutex
	buckets     map[netip.Addr]*bucket
	lastCleanup time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// cleanupEvery is how often buckets that have refilled completely are
// dropped (they are indistinguishable from a fresh client).
const cleanupEvery = 10 * time.Second

func newLimiter(cfg RateLimit) *limiter {
	if !cfg.Disabled {
		if cfg.Burst <= 0 {
			cfg.Burst = DefaultRateLimit.Burst
		}
		if cfg.PerSecond <= 0 {
			cfg.PerSecond = DefaultRateLimit.PerSecond
		}
		if cfg.MaxClients <= 0 {
			cfg.MaxClients = DefaultRateLimit.MaxClients
		}
	}
	return &limiter{cfg: cfg, buckets: map[netip.Addr]*bucket{}}
}

func (l *limiter) refill(b *bucket, now time.Time) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens += dt * l.cfg.PerSecond
		if b.tokens > l.cfg.Burst {
			b.tokens = l.cfg.Burst
		}
	}
	b.last = now
}

func (l *limiter) cleanup(now time.Time) {
	for ip, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.cfg.Burst {
			delete(l.buckets, ip)
		}
	}
	l.lastCleanup = now
}

// allow spends one token of ip's bucket.
func (l *limiter) allow(ip netip.Addr, now time.Time) bool {
	if l.cfg.Disabled {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastCleanup) >= cleanupEvery {
		l.cleanup(now)
	}
	b, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= l.cfg.MaxClients {
			l.cleanup(now)
			if len(l.buckets) >= l.cfg.MaxClients {
				return false
			}
		}
		b = &bucket{tokens: l.cfg.Burst, last: now}
		l.buckets[ip] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// clientIPv4 reads the peer address; spec §1.1 serves IPv4 clients only.
// IPv4-mapped IPv6 addresses (dual-stack listeners) count as IPv4.
func clientIPv4(remote string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	return ip, ip.Is4()
}
