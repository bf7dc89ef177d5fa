package rpc

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/rpcclient"
	"github.com/snodebox/snodebox/storage/testvectors"
)

type requestSigVector struct {
	Inputs struct {
		Seed      string   `json:"ed25519_seed_hex"`
		Pub       string   `json:"ed25519_pub_hex"`
		SessionID string   `json:"session_id(05+x25519)"`
		Messages  []string `json:"messages_utf8"`
	}
	Expected struct {
		Sigs map[string]string `json:"signature_b64_by_message"`
	}
}

func loadVector(t *testing.T, id string, in, exp any) {
	t.Helper()
	vs, err := testvectors.Prefix(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(vs[0].Inputs, in); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(vs[0].Expected, exp); err != nil {
		t.Fatal(err)
	}
}

// derived.request_signatures: the vector's exact signatures, sent with the
// Session ID and pubkey_ed25519, are accepted by the methods they sign for
// (§3.1 step 2: ed25519 → x25519 must match the 05 account).
func TestRequestSignatureVectorsAccepted(t *testing.T) {
	var v requestSigVector
	loadVector(t, "derived.request_signatures", &v.Inputs, &v.Expected)
	sig := func(msg string) string {
		s, ok := v.Expected.Sigs[msg]
		if !ok {
			t.Fatalf("vector has no signature for %q", msg)
		}
		return s
	}
	withAuth := func(msg string, p map[string]any) map[string]any {
		p["pubkey"] = v.Inputs.SessionID
		p["pubkey_ed25519"] = v.Inputs.Pub
		p["signature"] = sig(msg)
		return p
	}
	hash := "XIdXUcGkRZx9FBAtaZaUyaawoHYvbXe4fks8Tst0aC0"
	cases := []struct {
		msg, method string
		params      map[string]any
	}{
		{"retrieve1700000000000", "retrieve", map[string]any{"timestamp": testNow}},
		{"retrieve421700000000000", "retrieve", map[string]any{"timestamp": testNow, "namespace": 42}},
		{"store421700000000000", "store", map[string]any{"timestamp": testNow, "ttl": day, "namespace": 42, "data": "aGk="}},
		{"delete_all1700000000000", "delete_all", map[string]any{"timestamp": testNow}},
		{"delete_allall1700000000000", "delete_all", map[string]any{"timestamp": testNow, "namespace": "all"}},
		{"delete_before-101700000000000", "delete_before", map[string]any{"before": testNow, "namespace": -10}},
		{"expire_all1700000000000", "expire_all", map[string]any{"expiry": testNow}},
		{"expireextend1700000000000" + hash, "expire", map[string]any{"expiry": testNow, "extend": true, "messages": []string{hash}}},
	}
	for _, c := range cases {
		t.Run(c.msg, func(t *testing.T) {
			n := newTestNode(t, 1)
			status, _, raw := n.do(t, c.method, withAuth(c.msg, c.params))
			if status != 200 {
				t.Fatalf("%s with the vector signature: %d %s", c.method, status, raw)
			}
			// the same request with one flipped signature bit is refused
			bad, _ := base64.StdEncoding.DecodeString(sig(c.msg))
			bad[10] ^= 1
			c.params["signature"] = base64.StdEncoding.EncodeToString(bad)
			if status, _, raw := n.do(t, c.method, c.params); status != 401 {
				t.Fatalf("%s with a corrupted signature: %d %s", c.method, status, raw)
			}
		})
	}
	// Every signed string of the vector verifies under the §3.1 key choice,
	// including those whose method needs message hashes the vector has not
	// (get_expiries with none) and the monitor string.
	n := newTestNode(t, 1)
	acct, err := storage.ParseAccount(v.Inputs.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range v.Inputs.Messages {
		s, _ := base64.StdEncoding.DecodeString(sig(msg))
		a := &auth{account: acct, edPub: mustHex(t, v.Inputs.Pub), sig: s}
		if !n.srv.verify(context.Background(), a, 0, false, []byte(msg)) {
			t.Errorf("vector signature over %q rejected", msg)
		}
		a.edPub = nil // a real Session ID is X25519: it cannot verify directly
		if n.srv.verify(context.Background(), a, 0, false, []byte(msg)) {
			t.Errorf("signature over %q accepted without pubkey_ed25519", msg)
		}
	}
}

type subaccountVector struct {
	Inputs struct {
		GroupSeed  string `json:"group_seed_hex"`
		Account    string `json:"account_pubkey_hex"`
		Subaccount string `json:"subaccount_b64"`
		SubSig     string `json:"subaccount_sig_b64"`
		Signature  string `json:"signature_b64"`
		SignedUTF8 string `json:"signed_message_utf8"`
	}
	Expected struct {
		Namespace int   `json:"storage_server_should_accept_retrieve_ns"`
		Timestamp int64 `json:"retrieve_timestamp_ms"`
		Flags     int   `json:"token_flags"`
	}
}

// ls.group_keys.swarm_subaccount_auth: libsession's subaccount retrieve is
// accepted at its timestamp, and refused once the token is revoked (§3.1
// step 3) — unless the namespace is unrevocable (§2.2).
func TestSubaccountVector(t *testing.T) {
	var v subaccountVector
	loadVector(t, "ls.group_keys.swarm_subaccount_auth", &v.Inputs, &v.Expected)
	n := newTestNode(t, 1)
	*n.now = v.Expected.Timestamp
	params := map[string]any{
		"pubkey":         v.Inputs.Account,
		"namespace":      v.Expected.Namespace,
		"timestamp":      v.Expected.Timestamp,
		"subaccount":     v.Inputs.Subaccount,
		"subaccount_sig": v.Inputs.SubSig,
		"signature":      v.Inputs.Signature,
	}
	if status, _, raw := n.do(t, "retrieve", params); status != 200 {
		t.Fatalf("vector subaccount retrieve: %d %s", status, raw)
	}
	// the hex form of the token is accepted too
	tok, _ := base64.StdEncoding.DecodeString(v.Inputs.Subaccount)
	params["subaccount"] = hex.EncodeToString(tok)
	if status, _, raw := n.do(t, "retrieve", params); status != 200 {
		t.Fatalf("hex token: %d %s", status, raw)
	}
	// an hour later the same request is out of tolerance
	*n.now = v.Expected.Timestamp + 61_000
	if status, _, raw := n.do(t, "retrieve", params); status != 406 || raw != "retrieve timestamp too far from current time" {
		t.Fatalf("stale request: %d %s", status, raw)
	}
	*n.now = v.Expected.Timestamp
	acct, _ := storage.ParseAccount(v.Inputs.Account)
	if err := n.store.Revoke(context.Background(), acct, [][]byte{tok}, v.Expected.Timestamp); err != nil {
		t.Fatal(err)
	}
	if status, _, raw := n.do(t, "retrieve", params); status != 401 || raw != "retrieve signature verification failed" {
		t.Fatalf("revoked token: %d %s", status, raw)
	}

	// Unrevocable namespace −11: a revoked token still reads. The vector's
	// group seed makes a token of the same shape for that namespace.
	group, err := rpcclient.NewGroup(mustHex(t, v.Inputs.GroupSeed))
	if err != nil {
		t.Fatal(err)
	}
	if group.Pubkey() != v.Inputs.Account {
		t.Fatalf("group seed gives %s, vector account %s", group.Pubkey(), v.Inputs.Account)
	}
	subSeed := seed32(0x42)
	gtok, gsig, err := group.Token(edPub(subSeed), byte(v.Expected.Flags))
	if err != nil {
		t.Fatal(err)
	}
	member, _ := group.Subaccount(subSeed, gtok, gsig)
	if err := n.store.Revoke(context.Background(), acct, [][]byte{gtok}, v.Expected.Timestamp); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ns     storage.Namespace
		status int
	}{{-11, 200}, {-111, 200}, {11, 401}, {999, 401}} {
		status, _, raw := n.do(t, "retrieve", member.Retrieve(rpcclient.RetrieveArgs{Namespace: c.ns, Timestamp: v.Expected.Timestamp}))
		if status != c.status {
			t.Errorf("revoked token retrieve ns %d: %d %s, want %d", c.ns, status, raw, c.status)
		}
	}
}

// §3.1 step 3 and the flag table: what each subaccount may do.
func TestSubaccountFlags(t *testing.T) {
	g := groupSigner(t, 9)
	subSeed := seed32(0x21)
	mk := func(flags byte, prefix byte) *rpcclient.Signer {
		tok, sig, err := g.Token(edPub(subSeed), flags)
		if err != nil {
			t.Fatal(err)
		}
		tok[0] = prefix
		sig = signWith(seed32(9), tok)
		s, err := g.Subaccount(subSeed, tok, sig)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const R, W, D, Any = rpcclient.FlagRead, rpcclient.FlagWrite, rpcclient.FlagDelete, rpcclient.FlagAnyPrefix
	retrieve := func(s *rpcclient.Signer) map[string]any {
		return s.Retrieve(rpcclient.RetrieveArgs{Namespace: 11, Timestamp: testNow})
	}
	store := func(s *rpcclient.Signer) map[string]any {
		return s.Store(rpcclient.StoreArgs{Namespace: 11, Data: []byte("m"), Timestamp: testNow, TTL: day})
	}
	delAll := func(s *rpcclient.Signer) map[string]any { return s.DeleteAll(storage.NSFilter{NS: 11}, testNow) }
	cases := []struct {
		name   string
		s      *rpcclient.Signer
		method string
		build  func(*rpcclient.Signer) map[string]any
		status int
	}{
		{"read may retrieve", mk(R, 3), "retrieve", retrieve, 200},
		{"write may not retrieve", mk(W, 3), "retrieve", retrieve, 401},
		{"write may store", mk(W, 3), "store", store, 200},
		{"read may not store", mk(R, 3), "store", store, 401},
		{"delete may delete_all", mk(D, 3), "delete_all", delAll, 200},
		{"read+write may not delete_all", mk(R|W, 3), "delete_all", delAll, 401},
		{"wrong prefix is refused", mk(R, 5), "retrieve", retrieve, 401},
		{"any-prefix flag allows another prefix", mk(R|Any, 5), "retrieve", retrieve, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newTestNode(t, 1)
			status, _, raw := n.do(t, c.method, c.build(c.s))
			if status != c.status {
				t.Fatalf("%d %s, want %d", status, raw, c.status)
			}
		})
	}
	// a token signed by someone else than the owner is refused
	n := newTestNode(t, 1)
	tok, _, _ := g.Token(edPub(subSeed), R)
	forged, _ := g.Subaccount(subSeed, tok, signWith(seed32(0x55), tok))
	if status, _, raw := n.do(t, "retrieve", retrieve(forged)); status != 401 {
		t.Fatalf("forged token: %d %s", status, raw)
	}
	// subaccount without its signature is a parse error
	p := retrieve(mk(R, 3))
	delete(p, "subaccount_sig")
	if status, _, raw := n.do(t, "retrieve", p); status != 400 || raw != "invalid request: invalid subaccount: subaccount_sig is required when using subaccount" {
		t.Fatalf("token without signature: %d %s", status, raw)
	}
}

// §4.2: retrieve auth, paging and size accounting.
func TestRetrieve(t *testing.T) {
	n := newTestNode(t, 1)
	user := sessionSigner(t, 7)
	var hashes []string
	for i := 0; i < 5; i++ {
		_, body, _ := n.do(t, "store", rpcclient.StoreUnsigned(user.Pubkey(), rpcclient.StoreArgs{Data: []byte{byte('a' + i)}, Timestamp: testNow + int64(i), TTL: day}))
		hashes = append(hashes, body["hash"].(string))
	}
	get := func(a rpcclient.RetrieveArgs) (int, map[string]any, string) {
		a.Timestamp = testNow
		return n.do(t, "retrieve", user.Retrieve(a))
	}
	status, body, raw := get(rpcclient.RetrieveArgs{})
	if status != 200 {
		t.Fatalf("retrieve: %d %s", status, raw)
	}
	msgs := body["messages"].([]any)
	if len(msgs) != 5 || body["more"] != false || body["t"] != float64(testNow) {
		t.Fatalf("retrieve all: %s", raw)
	}
	first := msgs[0].(map[string]any)
	if first["hash"] != hashes[0] || first["timestamp"] != float64(testNow) || first["expiration"] != float64(testNow+day) || first["data"] != "YQ==" {
		t.Fatalf("message fields (note: expiration, not expiry): %v", first)
	}
	// paging with max_count and last_hash (and its lastHash alias)
	_, body, _ = get(rpcclient.RetrieveArgs{MaxCount: 2, LastHash: hashes[1]})
	msgs = body["messages"].([]any)
	if len(msgs) != 2 || msgs[0].(map[string]any)["hash"] != hashes[2] || body["more"] != true {
		t.Fatalf("page after hashes[1]: %v", body)
	}
	p := user.Retrieve(rpcclient.RetrieveArgs{Timestamp: testNow})
	p["lastHash"] = hashes[3]
	_, body, _ = n.do(t, "retrieve", p)
	if msgs = body["messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["hash"] != hashes[4] {
		t.Fatalf("lastHash alias: %v", body)
	}
	// unknown last hash → from the start
	_, body, _ = get(rpcclient.RetrieveArgs{LastHash: storage.MessageHash(user.Account, 0, []byte("nope"))})
	if len(body["messages"].([]any)) != 5 {
		t.Fatalf("unknown last_hash did not restart: %v", body)
	}
	// size accounting: each message costs 100 + 43 + ⌊1·4/3⌋ = 144 bytes;
	// 300 bytes fit two; at least one always comes back.
	for _, c := range []struct{ size, want int }{{300, 2}, {1, 1}, {-1, 5}} {
		_, body, _ = get(rpcclient.RetrieveArgs{MaxSize: c.size})
		if got := len(body["messages"].([]any)); got != c.want {
			t.Errorf("max_size %d: %d messages, want %d", c.size, got, c.want)
		}
	}

	bad := []struct {
		name   string
		edit   func(map[string]any)
		status int
		text   string
	}{
		{"no signature on namespace 0", func(p map[string]any) {
			for _, k := range []string{"signature", "timestamp", "pubkey_ed25519"} {
				delete(p, k)
			}
		}, 401, "retrieve: request signature required"},
		{"timestamp without signature", func(p map[string]any) { delete(p, "signature") }, 400, "invalid request: Required field 'signature' missing"},
		{"old signature", func(p map[string]any) { p["timestamp"] = testNow - 61_000 }, 406, "retrieve timestamp too far from current time"},
		{"wrong signature", func(p map[string]any) { p["signature"] = base64.RawStdEncoding.EncodeToString(make([]byte, 64)) }, 401, "retrieve signature verification failed"},
		{"last_hash and lastHash", func(p map[string]any) { p["last_hash"] = hashes[0]; p["lastHash"] = hashes[0] }, 400, "invalid request: Cannot specify both 'last_hash' and 'lastHash'"},
		{"short last_hash", func(p map[string]any) { p["last_hash"] = "abc" }, 400, "invalid request: Invalid last_hash: expected base64 (43 chars)"},
		{"last_hash not base64", func(p map[string]any) { p["last_hash"] = "!" + hashes[0][1:] }, 400, "invalid request: Invalid last_hash: not base64"},
		{"max_count not an integer", func(p map[string]any) { p["max_count"] = "5" }, 400, "invalid request: Invalid value given for 'max_count': expected integer"},
		{"negative timestamp", func(p map[string]any) { p["timestamp"] = -5 }, 400, "invalid request: Invalid value given for 'timestamp': expected integer timestamp (in milliseconds)"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			p := user.Retrieve(rpcclient.RetrieveArgs{Timestamp: testNow})
			c.edit(p)
			status, _, raw := n.do(t, "retrieve", p)
			if status != c.status || raw != c.text {
				t.Fatalf("%d %q, want %d %q", status, raw, c.status, c.text)
			}
		})
	}
	// −10 (legacy closed groups) needs no auth
	if status, _, raw := n.do(t, "retrieve", rpcclient.RetrieveUnsigned(user.Pubkey(), rpcclient.RetrieveArgs{Namespace: -10})); status != 200 {
		t.Fatalf("no-auth namespace −10: %d %s", status, raw)
	}
}

func TestRetrieveLimits(t *testing.T) {
	cases := []struct {
		count, size int64
		wantCount   int
		wantSize    int64
	}{
		{0, 0, 0, RetrieveMaxSize / 5},
		{0, -1, 0, RetrieveMaxSize},
		{0, -3, 0, RetrieveMaxSize / 3},
		{0, 100, 0, 100},
		{0, 1 << 40, 0, RetrieveMaxSize},
		{10, 0, 10, RetrieveMaxSize},
	}
	for _, c := range cases {
		gc, gs := retrieveLimits(c.count, c.size)
		if gc != c.wantCount || gs != c.wantSize {
			t.Errorf("limits(%d, %d) = %d, %d; want %d, %d", c.count, c.size, gc, gs, c.wantCount, c.wantSize)
		}
	}
}

var _ = time.Second
