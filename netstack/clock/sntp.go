// Package clock keeps the node's time right on boards without an RTC: it
// restores the last known time from the data partition early in boot, asks
// several SNTP servers (RFC 4330) and takes the median offset, and persists
// the time at shutdown and every few minutes. Signatures are checked within
// ±60 s, so a node with a wrong clock is useless to the network.
package clock

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"
)

// ntpEpochOffset is the seconds between 1900-01-01 (NTP) and 1970-01-01.
const ntpEpochOffset = 2208988800

// Sample is one server's answer.
type Sample struct {
	Server  string
	Offset  time.Duration // add to the local clock to get the server's time
	Delay   time.Duration // round trip minus the server's processing time
	Stratum uint8
}

func toNTP(t time.Time) uint64 {
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

func fromNTP(v uint64) time.Time {
	secs := int64(v>>32) - ntpEpochOffset
	nanos := int64((v & 0xffffffff) * 1e9 >> 32)
	return time.Unix(secs, nanos)
}

// Query asks one server ("host" or "host:port", default port 123). now is
// the local clock (injectable for tests).
func Query(ctx context.Context, server string, now func() time.Time) (Sample, error) {
	if now == nil {
		now = time.Now
	}
	addr := server
	if _, _, err := net.SplitHostPort(server); err != nil {
		addr = net.JoinHostPort(strings.Trim(server, "[]"), "123")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return Sample{}, fmt.Errorf("sntp %s: %w", server, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	conn.SetDeadline(deadline)

	req := make([]byte, 48)
	req[0] = 0<<6 | 4<<3 | 3 // LI 0, version 4, mode 3 (client)
	t1 := now()
	// RFC 4330 §5: the client's transmit time goes out as Transmit
	// Timestamp and must come back as Originate Timestamp; that match is
	// what ties a reply to our request.
	xmit := toNTP(t1)
	binary.BigEndian.PutUint64(req[40:], xmit)
	if _, err := conn.Write(req); err != nil {
		return Sample{}, fmt.Errorf("sntp %s: send: %w", server, err)
	}
	buf := make([]byte, 128)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return Sample{}, fmt.Errorf("sntp %s: %w", server, err)
		}
		t4 := now()
		s, err := parseReply(buf[:n], xmit, t1, t4)
		if errors.Is(err, errNotOurs) {
			continue // a stray or duplicate datagram: keep waiting
		}
		if err != nil {
			return Sample{}, fmt.Errorf("sntp %s: %w", server, err)
		}
		s.Server = server
		return s, nil
	}
}

var errNotOurs = errors.New("reply does not answer our request")

func parseReply(b []byte, xmit uint64, t1, t4 time.Time) (Sample, error) {
	if len(b) < 48 {
		return Sample{}, fmt.Errorf("short reply (%d bytes)", len(b))
	}
	li, vn, mode := b[0]>>6, (b[0]>>3)&7, b[0]&7
	stratum := b[1]
	if binary.BigEndian.Uint64(b[24:]) != xmit {
		return Sample{}, errNotOurs
	}
	if mode != 4 && mode != 5 {
		return Sample{}, fmt.Errorf("reply mode %d, want server (4)", mode)
	}
	if vn < 3 {
		return Sample{}, fmt.Errorf("reply version %d", vn)
	}
	if stratum == 0 {
		// Kiss-o'-Death: the reference id says why (RATE, DENY, ...).
		return Sample{}, fmt.Errorf("server refused (kiss code %q)", strings.TrimRight(string(b[12:16]), "\x00"))
	}
	if li == 3 {
		return Sample{}, errors.New("server clock not synchronised (leap indicator 3)")
	}
	recv, sent := binary.BigEndian.Uint64(b[32:]), binary.BigEndian.Uint64(b[40:])
	if sent == 0 {
		return Sample{}, errors.New("reply without transmit timestamp")
	}
	t2, t3 := fromNTP(recv), fromNTP(sent)
	// RFC 4330 §5: offset = ((T2 - T1) + (T3 - T4)) / 2, delay = (T4 - T1) - (T3 - T2).
	offset := (t2.Sub(t1) + t3.Sub(t4)) / 2
	delay := t4.Sub(t1) - t3.Sub(t2)
	return Sample{Offset: offset, Delay: delay, Stratum: stratum}, nil
}

// QueryAll asks every server in parallel and returns the median offset of
// those that answered (a median rides out one wrong server). ok is false
// when none answered; errs holds every failure.
func QueryAll(ctx context.Context, servers []string, now func() time.Time) (offset time.Duration, samples []Sample, errs []error, ok bool) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			smp, err := Query(ctx, s, now)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			samples = append(samples, smp)
		}()
	}
	wg.Wait()
	if len(samples) == 0 {
		return 0, nil, errs, false
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i].Offset < samples[j].Offset })
	return Median(samples), samples, errs, true
}

// Median of the sample offsets (samples sorted by offset).
func Median(samples []Sample) time.Duration {
	n := len(samples)
	if n%2 == 1 {
		return samples[n/2].Offset
	}
	return (samples[n/2-1].Offset + samples[n/2].Offset) / 2
}
