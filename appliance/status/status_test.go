package status

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/appliance/slots"
	"github.com/snodebox/snodebox/board"
	"github.com/snodebox/snodebox/board/sim"
)

const (
	testEd = "d4a1b2c3e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff00"
	testX  = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff1"
)

func sampleReport() Report {
	temp := 51.5
	return Report{
		Status: node.Status{
			Healthy: false, Reasons: []string{"not in a swarm yet", `evil <script>alert("x")</script>`},
			Version: "0.1.0-test", Protocol: "2.11.0", Ed25519: testEd, X25519: testX,
			Address: "https://192.168.1.20:22021", Registry: "devnet", UptimeS: 93784,
			Messages: 1234, DBBytes: 5 << 20, DBCap: 100 << 20, Fsyncs: 17, Stores: 4321,
			SwarmID: "3fffffffffffffff", Swarm: []string{testEd, strings.Repeat("ab", 32)},
		},
		Warnings:     []string{"clock not synced"},
		LED:          "syncing",
		Board:        board.Info{Name: "rpi4", Model: "Raspberry Pi 4 Model B Rev 1.4", Serial: "10000000abcdef01"},
		TemperatureC: &temp,
		Services: []ServiceState{
			{Name: "https", State: "running"},
			{Name: "swarm", State: "backoff", Restarts: 3, LastError: "dial tcp: refused"},
		},
		Disk:   Disk{Mount: "/data", TotalBytes: 30 << 30, FreeBytes: 20 << 30},
		Memory: Memory{TotalBytes: 1 << 30, AvailableBytes: 600 << 20, RSSBytes: 40 << 20},
		Tuning: []Tuned{{Name: "net.core.somaxconn", Value: "4096", Default: "4096", Source: "default"}},
		Peers: []PeerState{
			{Ed25519: strings.Repeat("ab", 32), Address: "192.168.1.21:22021", OK: true, LastSeen: time.Now().Add(-5 * time.Second)},
			{Ed25519: strings.Repeat("cd", 32), Address: "192.168.1.22:22021", Failures: 4},
		},
		Slot: "A",
		Logs: []string{`time=2026-01-01T00:00:00Z level=INFO msg="node started"`, "level=WARN msg=<b>bold</b>"},
	}
}

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec
}

func TestStatusJSONKeepsNodeFieldsTopLevel(t *testing.T) {
	h := Handler(SourceFunc(sampleReport), nil)
	rec := get(t, h, "/status.json")
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["healthy"] != false {
		t.Errorf("healthy = %v, want top-level false", m["healthy"])
	}
	if rs, ok := m["reasons"].([]any); !ok || len(rs) != 2 || rs[0] != "not in a swarm yet" {
		t.Errorf("reasons = %v", m["reasons"])
	}
	for _, k := range []string{"ed25519", "x25519", "swarm_id", "messages", "db_bytes", "uptime_s", "version",
		"warnings", "led", "board", "temperature_c", "services", "disk", "memory", "tuning", "peers", "slot", "logs"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing from status.json", k)
		}
	}
	if _, ok := m["Status"]; ok {
		t.Error("node.Status nested instead of embedded")
	}
	if b := m["board"].(map[string]any); b["name"] != "rpi4" {
		t.Errorf("board = %v", b)
	}
	if m["temperature_c"] != 51.5 {
		t.Errorf("temperature_c = %v", m["temperature_c"])
	}
	peers := m["peers"].([]any)
	if _, ok := peers[1].(map[string]any)["last_seen"]; ok {
		t.Error("a never-seen peer has a last_seen")
	}
	var back Report
	if err := json.Unmarshal(rec.Body.Bytes(), &back); err != nil || back.Ed25519 != testEd || back.Services[1].Restarts != 3 {
		t.Fatalf("round trip: %v %+v", err, back.Services)
	}
}

func TestStatusJSONNoTemperatureIsNull(t *testing.T) {
	r := sampleReport()
	r.TemperatureC = nil
	rec := get(t, Handler(SourceFunc(func() Report { return r }), nil), "/status.json")
	var m map[string]any
	json.Unmarshal(rec.Body.Bytes(), &m)
	if v, ok := m["temperature_c"]; !ok || v != nil {
		t.Fatalf("temperature_c = %v (present %v), want null", v, ok)
	}
}

func TestLANOnly(t *testing.T) {
	h := LANOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	tests := []struct {
		remote string
		want   int
	}{
		{"127.0.0.1:5000", 204},
		{"[::1]:5000", 204},
		{"10.1.2.3:1", 204},
		{"172.16.0.9:1", 204},
		{"172.31.255.1:1", 204},
		{"192.168.1.50:1", 204},
		{"169.254.10.1:1", 204},
		{"[fd12:3456::1]:1", 204},
		{"[fe80::1]:1", 204},
		{"[::ffff:192.168.0.2]:1", 204},
		{"8.8.8.8:1", 403},
		{"172.32.0.1:1", 403},
		{"100.64.0.1:1", 403},
		{"[2001:db8::1]:1", 403},
		{"[::ffff:1.1.1.1]:1", 403},
		{"garbage", 403},
	}
	for _, tc := range tests {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = tc.remote
		req.Header.Set("X-Forwarded-For", "192.168.1.1") // never trusted
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s: %d, want %d", tc.remote, rec.Code, tc.want)
		}
	}
}

func post(t *testing.T, h http.Handler, ct, body string) *httptest.ResponseRecorder {
	t.Helper()
	return postToken(t, h, ct, pageToken(t, h), body)
}

func postToken(t *testing.T, h http.Handler, ct, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/button", strings.NewReader(body))
	req.Header.Set("Content-Type", ct)
	if token != "" {
		req.Header.Set(TokenHeader, token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// pageToken reads the button token the way the page's script does.
func pageToken(t *testing.T, h http.Handler) string {
	t.Helper()
	m := regexp.MustCompile(`data-token="([0-9a-f]{32})"`).FindStringSubmatch(get(t, h, "/").Body.String())
	if m == nil {
		t.Fatal("the page shows no button token")
	}
	return m[1]
}

func TestSimButtonAPI(t *testing.T) {
	b := sim.New()
	h := Handler(SourceFunc(sampleReport), b)
	steps := []struct {
		body   string
		action string
		armed  bool
	}{
		{`{"hold_ms": 300}`, "status", false},
		{`{"hold_ms": 5000}`, "reboot", false},
		{`{"hold_ms": 15000}`, "", true},
		{"page", "", true},
		{`{"hold_ms": 100}`, "factory-reset", false},
		{`{"power": true}`, "power-off", false},
	}
	for _, s := range steps {
		if s.body == "page" {
			if !strings.Contains(get(t, h, "/").Body.String(), `id="reset-armed"`) {
				t.Fatal("page does not say the factory reset is armed")
			}
			continue
		}
		rec := post(t, h, "application/json", s.body)
		if rec.Code != 200 {
			t.Fatalf("%s: %d %s", s.body, rec.Code, rec.Body)
		}
		var rep ButtonReply
		json.Unmarshal(rec.Body.Bytes(), &rep)
		if rep.Action != s.action || rep.Armed != s.armed {
			t.Fatalf("%s: reply %+v, want action %q armed %v", s.body, rep, s.action, s.armed)
		}
		if s.action != "" {
			if a := <-b.Actions(); a.String() != s.action {
				t.Fatalf("%s: board delivered %v", s.body, a)
			}
		}
	}
	// Another web page in the user's browser cannot press: a cross-site
	// form post (form encoding, no token) or a JSON post without the token
	// or with an old one is refused, and nothing reaches the board.
	token := pageToken(t, h)
	for _, tc := range []struct {
		ct, token, body string
		want            int
	}{
		{"application/x-www-form-urlencoded", "", url.Values{"hold_ms": {"16000"}}.Encode(), http.StatusUnsupportedMediaType},
		{"text/plain", token, `{"hold_ms": 16000}`, http.StatusUnsupportedMediaType},
		{"application/json", "", `{"hold_ms": 16000}`, http.StatusForbidden},
		{"application/json", strings.Repeat("0", 32), `{"hold_ms": 16000}`, http.StatusForbidden},
	} {
		if rec := postToken(t, h, tc.ct, tc.token, tc.body); rec.Code != tc.want {
			t.Errorf("%s token=%q: %d, want %d", tc.ct, tc.token, rec.Code, tc.want)
		}
	}
	if b.FactoryResetArmed() {
		t.Fatal("a refused press armed the factory reset")
	}
	// A DNS-rebound name is not this node's page.
	req := httptest.NewRequest("POST", "http://evil.example:8080/api/button", strings.NewReader(`{"hold_ms": 300}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(TokenHeader, token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("press through a DNS name: %d, want 403", rec.Code)
	}
	if other := pageToken(t, Handler(SourceFunc(sampleReport), sim.New())); other == token {
		t.Error("two handlers share a token")
	}

	for _, bad := range []string{``, `{}`, `{"hold_ms": -1}`, `{"hold_ms": 999999999}`, `{"hold_ms": "x"}`,
		`{"hold_ms": 1, "power": true}`, `{"press": 1}`, `[`} {
		if rec := post(t, h, "application/json", bad); rec.Code != 400 {
			t.Errorf("body %q: %d, want 400", bad, rec.Code)
		}
	}

	b.SetLED(board.LEDHealthy)
	rec = get(t, h, "/api/led")
	var led struct {
		LED     string `json:"led"`
		History []struct {
			State string `json:"state"`
		} `json:"history"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &led); err != nil || led.LED != "healthy" ||
		len(led.History) != 2 || led.History[0].State != "booting" {
		t.Fatalf("/api/led: %v %s", err, rec.Body)
	}
}

func TestNoSimNoButton(t *testing.T) {
	h := Handler(SourceFunc(sampleReport), nil)
	if rec := postToken(t, h, "application/json", "", `{"hold_ms": 300}`); rec.Code == 200 {
		t.Fatal("button API served without a simulated board")
	}
	if rec := get(t, h, "/api/led"); rec.Code == 200 {
		t.Fatal("LED API served without a simulated board")
	}
	if rec := get(t, h, "/nope"); rec.Code != 404 {
		t.Fatalf("unknown path: %d", rec.Code)
	}
}

func TestPageEscapesAndShowsEssentials(t *testing.T) {
	rec := get(t, Handler(SourceFunc(sampleReport), sim.New()), "/")
	body := rec.Body.String()
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("status %d type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if strings.Contains(body, `<script>alert`) || strings.Contains(body, "<b>bold</b>") {
		t.Fatal("reason or log line rendered unescaped")
	}
	for _, want := range []string{"Not healthy", "not in a swarm yet", "&lt;script&gt;", "clock not synced", testEd, testX,
		"3fffffffffffffff", "1234", "5.0 MiB", "100 MiB", "51.5 °C", "1 d 2 h", "rpi4", "slot A",
		"net.core.somaxconn", "dial tcp: refused", "node started", "LED: syncing", "Simulated board", "20 GiB free"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if !strings.Contains(body, "this node") {
		t.Error("our own swarm membership not marked")
	}
	if !strings.Contains(get(t, Handler(SourceFunc(sampleReport), nil), "/").Body.String(), `id="peers"`) {
		t.Error("peer table missing")
	}
	if strings.Contains(get(t, Handler(SourceFunc(sampleReport), nil), "/").Body.String(), "Simulated board") {
		t.Error("sim controls shown without a simulated board")
	}
}

func TestHumanFormats(t *testing.T) {
	bytesCases := map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 100 << 20: "100 MiB", 3 << 40: "3.0 TiB"}
	for n, want := range bytesCases {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	durCases := map[time.Duration]string{5 * time.Second: "5 s", 125 * time.Second: "2 min 5 s", 3*time.Hour + 4*time.Minute: "3 h 4 min", 50 * time.Hour: "2 d 2 h"}
	for d, want := range durCases {
		if got := HumanDuration(d); got != want {
			t.Errorf("HumanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// The "update" object (image issue contract) in JSON and in words.
func TestUpdateObjectAndItsWords(t *testing.T) {
	at := time.Date(2026, 12, 4, 10, 30, 0, 0, time.UTC)
	r := sampleReport()
	r.Update = &Update{Status: slots.Status{
		BootedSlot: "A", Version: "v1", Committed: true, HealthWindow: "5m0s",
		OtherSlot:  slots.Other{Version: "v2", State: "bad"},
		LastSwitch: &slots.Switch{From: "B", To: "A", Reason: "slot B (version v2) did not start: its attempts ran out", At: at},
		Rollback:   "slot B (version v2) did not start: its attempts ran out",
	}}
	h := Handler(SourceFunc(func() Report { return r }), nil)
	var got struct {
		Update struct {
			BootedSlot string `json:"booted_slot"`
			Version    string `json:"version"`
			OtherSlot  struct {
				Version string `json:"version"`
				State   string `json:"state"`
			} `json:"other_slot"`
			LastSwitch struct {
				From, To, Reason string
				At               time.Time
			} `json:"last_switch"`
		} `json:"update"`
	}
	if err := json.Unmarshal(get(t, h, "/status.json").Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	u := got.Update
	if u.BootedSlot != "A" || u.Version != "v1" || u.OtherSlot.State != "bad" || u.OtherSlot.Version != "v2" ||
		u.LastSwitch.From != "B" || u.LastSwitch.To != "A" || !u.LastSwitch.At.Equal(at) {
		t.Errorf("update object %+v", u)
	}
	body := get(t, h, "/").Body.String()
	for _, want := range []string{"Running slot <b>A</b>, version <b>v1</b>", "marked good", "bad: it failed",
		"Last switch from slot B to slot A at 2026-12-04 10:30 UTC", "An update was rolled back", "Press the button briefly"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Hosted and kernel+initramfs boots have no slots: "update" is null.
	var plain map[string]json.RawMessage
	json.Unmarshal(get(t, Handler(SourceFunc(sampleReport), nil), "/status.json").Body.Bytes(), &plain)
	if string(plain["update"]) != "null" {
		t.Errorf("update without slots: %s", plain["update"])
	}
}

func TestWriteTextSaysWhatThePageSays(t *testing.T) {
	r := sampleReport()
	r.Update = &Update{Status: slots.Status{BootedSlot: "B", Version: "v2", Committed: true, OtherSlot: slots.Other{Version: "v1", State: "good"}},
		Last: &Attempt{Version: "v2", Result: "committed", Reason: "slot B healthy", At: time.Unix(0, 0)}}
	var b strings.Builder
	WriteText(&b, r)
	out := b.String()
	for _, want := range []string{"NOT HEALTHY (LED syncing)", "why: not in a swarm yet", "warning: clock not synced", testEd, testX,
		"swarm: 3fffffffffffffff, 2 member(s)", "(this node)", "messages: 1234 held", "system: slot B, version v2, marked good",
		"other slot: version v1, good", "last update: v2 committed"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

func TestHistoryRingAndGraphs(t *testing.T) {
	h := NewHistory()
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	temp := 48.0
	for i := 0; i < HistoryLen+10; i++ {
		h.Add(t0.Add(time.Duration(i)*HistoryEvery), int64(i*300), int64(i*10), uint64(i)<<20, &temp)
	}
	s := h.Samples()
	if len(s) != HistoryLen || !s[0].At.Equal(t0.Add(10*HistoryEvery)) || !s[len(s)-1].At.After(s[0].At) {
		t.Fatalf("ring holds %d samples from %v", len(s), s[0].At)
	}
	if s[5].StoresPerSec != 10 {
		t.Errorf("stores/s %v, want 300 per 30 s = 10", s[5].StoresPerSec)
	}
	r := sampleReport()
	r.History = s
	body := get(t, Handler(SourceFunc(func() Report { return r }), nil), "/").Body.String()
	for _, want := range []string{`id="history"`, "stores/s: 10.0/s", "messages held: 1290", "temperature: 48.0 °C", "<svg class=\"spark\"", "<polyline"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script src") || strings.Contains(body, "http://") && strings.Contains(body, "<img") {
		t.Error("graphs pull in external assets")
	}
	if len(Graphs(s[:1])) != 0 {
		t.Error("one sample drew a graph")
	}
}

func TestOxendFactsOnThePage(t *testing.T) {
	r := sampleReport()
	r.Oxend = &node.OxendStatus{Height: 1234567, LastPing: time.Now().Add(-20 * time.Second), Active: true}
	body := get(t, Handler(SourceFunc(func() Report { return r }), nil), "/").Body.String()
	for _, want := range []string{"oxend: block height 1234567", "last ping accepted", "in the active set"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
