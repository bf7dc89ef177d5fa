package rpc

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/memstore"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

const day = int64(24 * 3600 * 1000)

// §4.1: the store rules, one row per rule.
func TestStore(t *testing.T) {
	user := sessionSigner(t, 7)
	group := groupSigner(t, 9)
	otherPrefix, err := rpcclient.NewEd25519(0x15, seed32(11))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("hello")
	b64 := base64.StdEncoding.EncodeToString(data)
	signed := func(ns storage.Namespace, ts, ttl int64) rpcclient.Params {
		return user.Store(rpcclient.StoreArgs{Namespace: ns, Data: data, Timestamp: ts, TTL: ttl})
	}
	with := func(p rpcclient.Params, kv ...any) rpcclient.Params {
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(p, kv[i].(string))
			} else {
				p[kv[i].(string)] = kv[i+1]
			}
		}
		return p
	}
	cases := []struct {
		name   string
		params rpcclient.Params
		status int
		text   string // exact body for text answers
	}{
		{"public inbox needs no signature", rpcclient.StoreUnsigned(user.Pubkey(), rpcclient.StoreArgs{Data: data, Timestamp: testNow, TTL: day}), 200, ""},
		{"public inbox ignores a bad optional signature (§16)", with(signed(0, testNow, day), "signature", strings.Repeat("A", 86)), 200, ""},
		{"signed store to a private namespace", signed(5, testNow, day), 200, ""},
		{"legacy pubKey alias", with(rpcclient.StoreUnsigned(user.Pubkey(), rpcclient.StoreArgs{Data: data, Timestamp: testNow, TTL: day}), "pubkey", nil, "pubKey", user.Pubkey()), 200, ""},
		{"stringified timestamp and ttl", with(rpcclient.StoreUnsigned(user.Pubkey(), rpcclient.StoreArgs{Data: data, Timestamp: testNow, TTL: day}), "timestamp", "1700000000000", "ttl", "86400000"), 200, ""},
		{"absolute expiry instead of ttl", with(rpcclient.StoreUnsigned(user.Pubkey(), rpcclient.StoreArgs{Data: data, Timestamp: testNow, TTL: day}), "ttl", nil, "expiry", testNow+day), 200, ""},
		{"03 group store with its own key", group.Store(rpcclient.StoreArgs{Namespace: 11, Data: data, Timestamp: testNow, TTL: day}), 200, ""},
		{"unpadded 86-char signature", with(signed(5, testNow, day), "signature", strings.TrimRight(signed(5, testNow, day)["signature"].(string), "=")), 200, ""},
		{"any other prefix verifies with its key bytes", otherPrefix.Store(rpcclient.StoreArgs{Namespace: 5, Data: data, Timestamp: testNow, TTL: day}), 200, ""},
		{"signature with non-base64 characters", with(signed(5, testNow, day), "signature", strings.Repeat("*", 86)+"=="), 400, "invalid request: invalid signature: expected base64 encoded Ed25519 signature"},
		{"signature padded wrongly", with(signed(5, testNow, day), "signature", strings.TrimRight(signed(5, testNow, day)["signature"].(string), "=")+"A="), 400, "invalid request: invalid signature: expected base64 encoded Ed25519 signature"},
		{"pubkey_ed25519 of the wrong length", with(signed(5, testNow, day), "pubkey_ed25519", "abcd"), 400, "invalid request: Invalid pubkey_ed25519: expected 64 hex char or 32 byte pubkey"},
		{"subaccount token of the wrong length", with(signed(5, testNow, day), "subaccount", "AAAA", "subaccount_sig", signed(5, testNow, day)["signature"]), 400, "invalid request: invalid subaccount: expected base64 or hex-encoded subaccount token"},
		{"subaccount signature not base64", with(group.Store(rpcclient.StoreArgs{Namespace: 11, Data: data, Timestamp: testNow, TTL: day}), "subaccount", strings.Repeat("A", 48), "subaccount_sig", "%%%"), 400, "invalid request: invalid subaccount signature: expected base64 encoded Ed25519 signature"},
		{"private namespace without signature", rpcclient.StoreUnsigned(user.Pubkey(), rpcclient.StoreArgs{Namespace: 5, Data: data, Timestamp: testNow, TTL: day}), 401, "store: signature required to store to namespace 5"},
		{"bad signature", with(signed(5, testNow, day), "signature", base64.StdEncoding.EncodeToString(make([]byte, 64))), 401, "store signature verification failed"},
		{"signature of another namespace", with(signed(5, testNow, day), "namespace", 6), 401, "store signature verification failed"},
		{"pubkey_ed25519 that does not convert to the 05 key", with(signed(5, testNow, day), "pubkey_ed25519", strings.Repeat("ab", 32)), 401, "store signature verification failed"},
		{"ttl under 10 s", signed(5, testNow, 9999), 403, "Provided expiry/TTL is not valid."},
		{"ttl over 14 days in a public inbox", rpcclient.StoreUnsigned(user.Pubkey(), rpcclient.StoreArgs{Data: data, Timestamp: testNow, TTL: 15 * day}), 403, "Provided expiry/TTL is not valid."},
		{"ttl of 30 days in a private namespace", signed(5, testNow, 30*day), 200, ""},
		{"ttl over 30 days", signed(5, testNow, 30*day+1), 403, "Provided expiry/TTL is not valid."},
		{"timestamp more than 10 s ahead", rpcclient.StoreUnsigned(user.Pubkey(), rpcclient.StoreArgs{Data: data, Timestamp: testNow + 10001, TTL: day}), 406, "Timestamp error: check your clock"},
		{"already expired", rpcclient.StoreUnsigned(user.Pubkey(), rpcclient.StoreArgs{Data: data, Timestamp: testNow - 2*day, TTL: day}), 406, "Timestamp error: check your clock"},
		{"signature timestamp out of tolerance", with(user.Store(rpcclient.StoreArgs{Namespace: 5, Data: data, Timestamp: testNow - 61000, TTL: day}), "timestamp", testNow, "sig_timestamp", testNow-61000), 406, "store signature timestamp too far from current time"},
		{"explicit sig_timestamp", with(user.Store(rpcclient.StoreArgs{Namespace: 5, Data: data, Timestamp: testNow - 30000, TTL: day}), "timestamp", testNow, "sig_timestamp", testNow-30000), 200, ""},
		{"missing timestamp", with(signed(0, testNow, day), "timestamp", nil), 400, "invalid request: Required field 'timestamp' missing"},
		{"ttl and expiry", with(signed(0, testNow, day), "expiry", testNow+day), 400, "invalid request: Cannot specify both 'expiry' and 'ttl'"},
		{"neither ttl nor expiry", with(signed(0, testNow, day), "ttl", nil), 400, "invalid request: Required field 'expiry' or 'ttl' missing"},
		{"pubkey and pubKey", with(signed(0, testNow, day), "pubKey", user.Pubkey()), 400, "invalid request: Cannot specify both 'pubkey' and 'pubKey'"},
		{"no pubkey", with(signed(0, testNow, day), "pubkey", nil), 400, "invalid request: Required field 'pubkey' missing"},
		{"short pubkey", with(signed(0, testNow, day), "pubkey", user.Pubkey()[:64]), 400, "invalid request: Pubkey must be 66 hex digits (33 bytes) long"},
		{"pubkey not hex", with(signed(0, testNow, day), "pubkey", "zz"+user.Pubkey()[2:]), 400, "invalid request: Pubkey must be 66 hex digits (33 bytes) long"},
		{"timestamp in seconds", with(signed(0, testNow, day), "expiry", 999999999, "ttl", nil), 400, "invalid request: Invalid timestamp for 'expiry': timestamp must be in milliseconds"},
		{"data not base64", with(signed(0, testNow, day), "data", "not base64!"), 400, "invalid request: Invalid 'data' value: not base64 encoded"},
		{"data too large", with(signed(0, testNow, day), "data", base64.StdEncoding.EncodeToString(make([]byte, MaxMessageData+3))), 400, "invalid request: Message body exceeds maximum allowed length of 76800 bytes"},
		{"data at the limit", with(rpcclient.StoreUnsigned(user.Pubkey(), rpcclient.StoreArgs{Data: data, Timestamp: testNow, TTL: day}), "data", base64.StdEncoding.EncodeToString(make([]byte, MaxMessageData))), 200, ""},
		{"missing data", with(signed(0, testNow, day), "data", nil), 400, "invalid request: Required field 'data' missing"},
		{"signature of the wrong length", with(signed(5, testNow, day), "signature", b64), 400, "invalid request: invalid signature: expected base64 encoded Ed25519 signature"},
		{"namespace out of range", with(signed(0, testNow, day), "namespace", 40000), 400, "invalid request: Invalid value given for 'namespace': value out of range"},
		{"namespace of the wrong type", with(signed(0, testNow, day), "namespace", "five"), 400, "invalid request: Invalid value given for 'namespace': expected 16-bit integer"},
		{"ttl of the wrong type", with(signed(0, testNow, day), "ttl", true), 400, "invalid request: Invalid value given for 'ttl': expected positive integer"},
		{"pubkey_ed25519 on a 03 account", with(group.Store(rpcclient.StoreArgs{Namespace: 11, Data: data, Timestamp: testNow, TTL: day}), "pubkey_ed25519", strings.Repeat("ab", 32)), 400, "invalid request: pubkey_ed25519 is only permitted for 05[...] pubkeys"},
		{"pubkey_ed25519 not hex", with(signed(5, testNow, day), "pubkey_ed25519", strings.Repeat("zz", 32)), 400, "invalid request: invalid pubkey_ed25519: value is not hex"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newTestNode(t, 1)
			status, body, raw := n.do(t, "store", c.params)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, raw)
			}
			if c.text != "" && raw != c.text {
				t.Fatalf("body %q, want %q", raw, c.text)
			}
			if status == 200 {
				e := n.mine(t, body)
				h, _ := e["hash"].(string)
				if !storage.ValidHash(h) || body["hash"] != h {
					t.Fatalf("entry hash %q, top-level hash %v", h, body["hash"])
				}
				checkNodeSig(t, n.keys, e["signature"], h)
				if _, ok := e["expiry"].(float64); !ok {
					t.Fatalf("entry has no expiry: %v", e)
				}
				if body["t"] != float64(testNow) || body["hf"] == nil {
					t.Fatalf("t/hf missing: %v", body)
				}
			}
		})
	}
}

// §5: the hash covers type, key, namespace and data; a re-store answers
// "already": true and keeps the later expiry.
func TestStoreAgainIsAlready(t *testing.T) {
	n := newTestNode(t, 1)
	user := sessionSigner(t, 7)
	p := rpcclient.StoreUnsigned(user.Pubkey(), rpcclient.StoreArgs{Data: []byte("x"), Timestamp: testNow, TTL: day})
	_, first, _ := n.do(t, "store", p)
	if _, ok := n.mine(t, first)["already"]; ok {
		t.Fatalf("first store says already: %v", first)
	}
	p["ttl"] = 2 * day
	status, again, _ := n.do(t, "store", p)
	e := n.mine(t, again)
	if status != 200 || e["already"] != true || e["hash"] != n.mine(t, first)["hash"] {
		t.Fatalf("re-store: %d %v", status, again)
	}
	if e["expiry"] != float64(testNow+2*day) {
		t.Fatalf("re-store expiry %v, want the later %d", e["expiry"], testNow+2*day)
	}
	want := storage.MessageHash(user.Account, 0, []byte("x"))
	if e["hash"] != want {
		t.Fatalf("hash %v, want %s", e["hash"], want)
	}
}

// A full database makes the node's own entry {"failed":true,
// "query_failure":true}; alone in its swarm every entry failed → 500.
func TestStoreFullDatabase(t *testing.T) {
	n := newTestNode(t, 1)
	n.store = memstore.NewWithCap(10)
	n.srv.cfg.Store = n.store
	user := sessionSigner(t, 7)
	status, body, raw := n.do(t, "store", rpcclient.StoreUnsigned(user.Pubkey(), rpcclient.StoreArgs{Data: make([]byte, 1000), Timestamp: testNow, TTL: day}))
	if status != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500: %s", status, raw)
	}
	e := n.mine(t, body)
	if e["failed"] != true || e["query_failure"] != true {
		t.Fatalf("entry %v, want failed + query_failure", e)
	}
	if _, ok := body["hash"]; ok {
		t.Fatalf("failed store still reports a hash: %v", body)
	}
}

// §2.2: the public outbox keeps one message and needs write+delete.
func TestStorePublicOutbox(t *testing.T) {
	n := newTestNode(t, 1)
	g := groupSigner(t, 9)
	for _, d := range []string{"one", "two"} {
		status, _, raw := n.do(t, "store", g.Store(rpcclient.StoreArgs{Namespace: -21, Data: []byte(d), Timestamp: testNow, TTL: day}))
		if status != 200 {
			t.Fatalf("store %s: %d %s", d, status, raw)
		}
	}
	status, body, raw := n.do(t, "retrieve", rpcclient.RetrieveUnsigned(g.Pubkey(), rpcclient.RetrieveArgs{Namespace: -21}))
	if status != 200 {
		t.Fatalf("no-auth retrieve of a public outbox: %d %s", status, raw)
	}
	msgs := body["messages"].([]any)
	if len(msgs) != 1 || msgs[0].(map[string]any)["data"] != base64.StdEncoding.EncodeToString([]byte("two")) {
		t.Fatalf("outbox holds %v, want only the newest", msgs)
	}
	// a write-only subaccount may not replace the outbox content
	sub := seed32(3)
	tok, tsig, err := g.Token(edPub(sub), rpcclient.FlagWrite)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := g.Subaccount(sub, tok, tsig)
	if err != nil {
		t.Fatal(err)
	}
	status, _, raw = n.do(t, "store", sa.Store(rpcclient.StoreArgs{Namespace: -21, Data: []byte("three"), Timestamp: testNow, TTL: day}))
	if status != 401 {
		t.Fatalf("write-only subaccount stored to a public outbox: %d %s", status, raw)
	}
	tok, tsig, _ = g.Token(edPub(sub), rpcclient.FlagWrite|rpcclient.FlagDelete)
	sa, _ = g.Subaccount(sub, tok, tsig)
	status, _, raw = n.do(t, "store", sa.Store(rpcclient.StoreArgs{Namespace: -21, Data: []byte("three"), Timestamp: testNow, TTL: day}))
	if status != 200 {
		t.Fatalf("write+delete subaccount: %d %s", status, raw)
	}
}
