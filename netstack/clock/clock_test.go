package clock

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// responder is an SNTP server on 127.0.0.1 whose clock is the test's clock
// plus skew.
type responder struct {
	conn    *net.UDPConn
	skew    time.Duration
	stratum uint8
	kiss    string
	stray   bool // first send an unrelated datagram
}

func startResponder(t *testing.T, r *responder) string {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r.conn = conn
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 128)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if n < 48 || buf[0]&7 != 3 {
				continue
			}
			now := time.Now().Add(r.skew)
			resp := make([]byte, 48)
			resp[0] = 0<<6 | 4<<3 | 4
			resp[1] = r.stratum
			if r.kiss != "" {
				resp[1] = 0
				copy(resp[12:16], r.kiss)
			}
			copy(resp[24:32], buf[40:48]) // originate = client's transmit
			binary.BigEndian.PutUint64(resp[32:], toNTP(now))
			binary.BigEndian.PutUint64(resp[40:], toNTP(now))
			if r.stray {
				junk := append([]byte(nil), resp...)
				binary.BigEndian.PutUint64(junk[24:], 42)
				conn.WriteToUDP(junk, from)
			}
			conn.WriteToUDP(resp, from)
		}
	}()
	return conn.LocalAddr().String()
}

func near(got, want time.Duration) bool {
	d := got - want
	return d < 50*time.Millisecond && d > -50*time.Millisecond
}

func TestQueryMeasuresOffset(t *testing.T) {
	for _, skew := range []time.Duration{0, 90 * time.Second, -3 * time.Hour} {
		addr := startResponder(t, &responder{skew: skew, stratum: 2})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := Query(ctx, addr, nil)
		cancel()
		if err != nil {
			t.Fatalf("skew %v: %v", skew, err)
		}
		if !near(s.Offset, skew) || s.Stratum != 2 || s.Delay < 0 {
			t.Errorf("skew %v: sample %+v", skew, s)
		}
	}
}

func TestQueryIgnoresStrayReplies(t *testing.T) {
	addr := startResponder(t, &responder{skew: time.Minute, stratum: 1, stray: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := Query(ctx, addr, nil)
	if err != nil || !near(s.Offset, time.Minute) {
		t.Fatalf("Query = %+v, %v: a reply with the wrong originate time must be skipped", s, err)
	}
}

func TestKissOfDeathIsAnError(t *testing.T) {
	addr := startResponder(t, &responder{kiss: "RATE"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Query(ctx, addr, nil); err == nil || !strings.Contains(err.Error(), "RATE") {
		t.Fatalf("Query against a kiss-o'-death server: %v, want an error naming RATE", err)
	}
}

func TestQueryAllTakesTheMedian(t *testing.T) {
	servers := []string{
		startResponder(t, &responder{skew: 10 * time.Second, stratum: 2}),
		startResponder(t, &responder{skew: 11 * time.Second, stratum: 2}),
		startResponder(t, &responder{skew: 5 * time.Hour, stratum: 2}), // one liar
	}
	// A closed port: nothing listens there.
	dead, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	servers = append(servers, deadAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	off, samples, errs, ok := QueryAll(ctx, servers, nil)
	if !ok || len(samples) != 3 || len(errs) != 1 {
		t.Fatalf("ok %v samples %d errs %v", ok, len(samples), errs)
	}
	if !near(off, 11*time.Second) {
		t.Errorf("median offset %v, want ~11s (the liar must not move it)", off)
	}
}

func TestMedianEven(t *testing.T) {
	got := Median([]Sample{{Offset: 1 * time.Second}, {Offset: 3 * time.Second}})
	if got != 2*time.Second {
		t.Errorf("median of 1s,3s = %v", got)
	}
}

func TestSyncStepsTheClock(t *testing.T) {
	addr := startResponder(t, &responder{skew: 2 * time.Minute, stratum: 3})
	// The offset is judged against the moment of the set, not after Sync
	// returns: a loaded CI machine once took 60 ms in between.
	var setTo, setAt time.Time
	c := &Clock{Servers: []string{addr}, StatePath: filepath.Join(t.TempDir(), StateFile), Set: func(t time.Time) error { setTo, setAt = t, time.Now(); return nil }}
	ok, err := c.Sync(context.Background())
	if !ok || err != nil {
		t.Fatalf("Sync = %v, %v", ok, err)
	}
	if d := setTo.Sub(setAt); !near(d, 2*time.Minute) {
		t.Errorf("clock set %v ahead, want ~2m", d)
	}
	if !c.Synced() {
		t.Error("Synced false after a successful sync")
	}
	if _, err := os.Stat(c.StatePath); err != nil {
		t.Errorf("a sync must persist the time: %v", err)
	}
}

func TestNoServerIsNotSynced(t *testing.T) {
	c := &Clock{Set: func(time.Time) error { t.Fatal("clock set without a server"); return nil }}
	if ok, err := c.Sync(context.Background()); ok || err == nil {
		t.Fatalf("Sync with no servers = %v, %v", ok, err)
	}
	if c.Synced() || c.LastError() == "" {
		t.Errorf("synced %v lastErr %q", c.Synced(), c.LastError())
	}
}

func TestPersistAndRestore(t *testing.T) {
	path := filepath.Join(t.TempDir(), StateFile)
	saved := time.Date(2026, 11, 22, 4, 0, 0, 123456789, time.UTC)
	writer := &Clock{StatePath: path, Now: func() time.Time { return saved }}
	if err := writer.Persist(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		now     time.Time
		wantSet bool
	}{
		{"board booted at 1970", time.Unix(0, 0), true},
		{"clock slightly behind", saved.Add(-time.Hour), true},
		{"clock ahead stays", saved.Add(time.Hour), false},
	}
	for _, tc := range tests {
		var got time.Time
		c := &Clock{StatePath: path, Now: func() time.Time { return tc.now }, Set: func(t time.Time) error { got = t; return nil }}
		restored, err := c.Restore()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.wantSet != !got.IsZero() || (tc.wantSet && (!got.Equal(saved) || !restored.Equal(saved))) {
			t.Errorf("%s: set %v restored %v, want set=%v to %v", tc.name, got, restored, tc.wantSet, saved)
		}
	}
	// Never persist a 1970 clock: it would drag the next boot back.
	bad := &Clock{StatePath: path, Now: func() time.Time { return time.Unix(10, 0) }}
	if err := bad.Persist(); err == nil {
		t.Error("persisted an implausible time")
	}
	if got, _ := Load(path); !got.Equal(saved) {
		t.Errorf("state file now %v, want %v", got, saved)
	}
	// No state file yet (first boot): a sane clock stays, a 1970 clock
	// goes to the build floor so health sees a plausible time.
	none := &Clock{StatePath: filepath.Join(t.TempDir(), StateFile), Set: func(time.Time) error { t.Fatal("set"); return nil }}
	if _, err := none.Restore(); err != nil {
		t.Errorf("first boot restore: %v", err)
	}
	var set time.Time
	pi := &Clock{StatePath: filepath.Join(t.TempDir(), StateFile), Now: func() time.Time { return time.Unix(5, 0) }, Set: func(t time.Time) error { set = t; return nil }}
	if got, err := pi.Restore(); err != nil || !got.Equal(floor()) || !set.Equal(floor()) || !Sane(set) {
		t.Errorf("first boot at 1970: restored %v set %v err %v, want the build floor %v", got, set, err, floor())
	}
}

func TestNTPTimestampRoundTrip(t *testing.T) {
	in := time.Date(2026, 11, 22, 4, 5, 6, 789000000, time.UTC)
	out := fromNTP(toNTP(in))
	if d := out.Sub(in); d > time.Microsecond || d < -time.Microsecond {
		t.Errorf("round trip %v → %v", in, out)
	}
}
