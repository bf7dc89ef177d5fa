package rpc

// Independent spec review (§2–§6): requests here are signed by hand from
// the spec's wording (crypto/ed25519, BLAKE2b, edwards25519), not through
// storage/rpcclient, so a mistake shared by our client and server shows.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/blake2b"

	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

// acct is a client account: the Ed25519 key that signs, and the 33-byte
// account it signs for (03/other prefixes: the key itself; a real Session
// ID: 05 + the key converted to X25519, sent with pubkey_ed25519).
type acct struct {
	priv    ed25519.PrivateKey
	typ     byte
	key     [32]byte
	session bool // send pubkey_ed25519
}

func edAcct(prefix, b byte) acct {
	priv := ed25519.NewKeyFromSeed(seed32(b))
	a := acct{priv: priv, typ: prefix}
	copy(a.key[:], priv.Public().(ed25519.PublicKey))
	return a
}

// sessionAcct is a Session ID: 05 || Montgomery u of the Ed25519 point.
func sessionAcct(t testing.TB, b byte) acct {
	a := edAcct(0x05, b)
	p, err := new(edwards25519.Point).SetBytes(a.priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	copy(a.key[:], p.BytesMontgomery())
	a.session = true
	return a
}

func (a acct) hex() string { return hex.EncodeToString(append([]byte{a.typ}, a.key[:]...)) }

func (a acct) edHex() string { return hex.EncodeToString(a.priv.Public().(ed25519.PublicKey)) }

// signed adds pubkey, signature over msg and (Session IDs) pubkey_ed25519.
func (a acct) signed(msg string, p map[string]any) map[string]any {
	p["pubkey"] = a.hex()
	p["signature"] = base64.StdEncoding.EncodeToString(ed25519.Sign(a.priv, []byte(msg)))
	if a.session {
		p["pubkey_ed25519"] = a.edHex()
	}
	return p
}

// specHash is §5: b64nopad(BLAKE2b-256(type ‖ key ‖ NS ‖ data)), NS empty for 0.
func specHash(a acct, ns int, data []byte) string {
	h, _ := blake2b.New256(nil)
	h.Write([]byte{a.typ})
	h.Write(a.key[:])
	if ns != 0 {
		h.Write([]byte(strconv.Itoa(ns)))
	}
	h.Write(data)
	return base64.RawStdEncoding.EncodeToString(h.Sum(nil))
}

func ms(n int64) string { return strconv.FormatInt(n, 10) }

// put stores data for a in ns (signed when the namespace needs it) and
// returns the spec hash.
func put(t *testing.T, n *testNode, a acct, ns int, data string, ttl int64) string {
	t.Helper()
	p := map[string]any{"namespace": ns, "timestamp": testNow, "ttl": ttl, "data": base64.StdEncoding.EncodeToString([]byte(data))}
	nsStr := ""
	if ns != 0 {
		nsStr = strconv.Itoa(ns)
	}
	p = a.signed("store"+nsStr+ms(testNow), p)
	status, body, raw := n.do(t, "store", p)
	if status != 200 {
		t.Fatalf("store %q in %d: %d %s", data, ns, status, raw)
	}
	h := specHash(a, ns, []byte(data))
	if body["hash"] != h {
		t.Fatalf("store answered hash %v, spec hash %s", body["hash"], h)
	}
	return h
}

// §4: each method's signed string, written out from the spec; the same
// request signed over a plausible wrong string (the classic mistakes:
// namespace 0 as "0", fields out of order) is refused with 401.
func TestSpecSignedStrings(t *testing.T) {
	grp := edAcct(0x03, 40)
	user := sessionAcct(t, 41)
	exp := testNow + day
	exp2 := testNow + 2*day
	tokenFor := func(flags byte) []byte {
		tok := make([]byte, 36)
		tok[0], tok[1] = 0x03, flags
		subKey := edAcct(0x03, 42).key
		copy(tok[4:], subKey[:])
		return tok
	}
	tok := tokenFor(0x01)
	type row struct {
		method string
		acct   acct
		params func(h1, h2 string) map[string]any
		good   func(h1, h2 string) string
		bad    func(h1, h2 string) string
	}
	rows := []row{
		{"store", user, func(_, _ string) map[string]any {
			return map[string]any{"namespace": 2, "timestamp": testNow, "ttl": day, "data": "eHl6"}
		}, func(_, _ string) string { return "store2" + ms(testNow) }, func(_, _ string) string { return "store" + ms(testNow) + "2" }},
		{"retrieve", user, func(_, _ string) map[string]any { return map[string]any{"timestamp": testNow} },
			func(_, _ string) string { return "retrieve" + ms(testNow) }, func(_, _ string) string { return "retrieve0" + ms(testNow) }},
		{"retrieve", user, func(_, _ string) map[string]any { return map[string]any{"namespace": 0, "timestamp": testNow} },
			func(_, _ string) string { return "retrieve" + ms(testNow) }, func(_, _ string) string { return "retrieve0" + ms(testNow) }},
		{"retrieve", user, func(_, _ string) map[string]any { return map[string]any{"namespace": -10, "timestamp": testNow} },
			func(_, _ string) string { return "retrieve-10" + ms(testNow) }, func(_, _ string) string { return "retrieve" + ms(testNow) }},
		{"delete", user, func(h1, h2 string) map[string]any { return map[string]any{"messages": []string{h2, h1}} },
			func(h1, h2 string) string { return "delete" + h2 + h1 }, func(h1, h2 string) string { return "delete" + h1 + h2 }},
		{"delete", user, func(h1, _ string) map[string]any { return map[string]any{"messages": h1} },
			func(h1, _ string) string { return "delete" + h1 }, func(h1, _ string) string { return "delete_msgs" + h1 }},
		{"delete_all", user, func(_, _ string) map[string]any { return map[string]any{"timestamp": testNow} },
			func(_, _ string) string { return "delete_all" + ms(testNow) }, func(_, _ string) string { return "delete_all0" + ms(testNow) }},
		{"delete_all", user, func(_, _ string) map[string]any { return map[string]any{"namespace": "all", "timestamp": testNow} },
			func(_, _ string) string { return "delete_allall" + ms(testNow) }, func(_, _ string) string { return "delete_all" + ms(testNow) }},
		{"delete_all", user, func(_, _ string) map[string]any { return map[string]any{"namespace": -30, "timestamp": testNow} },
			func(_, _ string) string { return "delete_all-30" + ms(testNow) }, func(_, _ string) string { return "delete_all" + ms(testNow) }},
		{"delete_before", user, func(_, _ string) map[string]any { return map[string]any{"namespace": 3, "before": testNow} },
			func(_, _ string) string { return "delete_before3" + ms(testNow) }, func(_, _ string) string { return "delete_before" + ms(testNow) }},
		{"delete_before", user, func(_, _ string) map[string]any { return map[string]any{"before": testNow} },
			func(_, _ string) string { return "delete_before" + ms(testNow) }, func(_, _ string) string { return "delete_before0" + ms(testNow) }},
		{"expire_all", user, func(_, _ string) map[string]any { return map[string]any{"namespace": "all", "expiry": exp} },
			func(_, _ string) string { return "expire_allall" + ms(exp) }, func(_, _ string) string { return "expire_all" + ms(exp) }},
		{"expire", user, func(h1, _ string) map[string]any { return map[string]any{"messages": []string{h1}, "expiry": exp} },
			func(h1, _ string) string { return "expire" + ms(exp) + h1 }, func(h1, _ string) string { return "expire" + h1 + ms(exp) }},
		{"expire", user, func(h1, _ string) map[string]any {
			return map[string]any{"messages": []string{h1}, "expiry": exp, "shorten": true}
		}, func(h1, _ string) string { return "expireshorten" + ms(exp) + h1 }, func(h1, _ string) string { return "expire" + ms(exp) + h1 }},
		{"expire", user, func(h1, _ string) map[string]any {
			return map[string]any{"messages": []string{h1}, "expiry": exp2, "extend": true}
		}, func(h1, _ string) string { return "expireextend" + ms(exp2) + h1 }, func(h1, _ string) string { return "expire" + ms(exp2) + h1 }},
		{"expire", user, func(h1, h2 string) map[string]any {
			return map[string]any{"messages": []string{h1, h2}, "expiry": []int64{exp, exp2}}
		}, func(h1, h2 string) string { return "expire" + ms(exp) + ms(exp2) + h1 + h2 },
			func(h1, h2 string) string { return "expire" + ms(exp) + h1 + ms(exp2) + h2 }},
		{"get_expiries", user, func(h1, h2 string) map[string]any {
			return map[string]any{"messages": []string{h1, h2}, "timestamp": testNow}
		}, func(h1, h2 string) string { return "get_expiries" + ms(testNow) + h1 + h2 },
			func(h1, h2 string) string { return "get_expiries" + h1 + h2 + ms(testNow) }},
		{"revoke_subaccount", grp, func(_, _ string) map[string]any {
			return map[string]any{"revoke": base64.StdEncoding.EncodeToString(tok), "timestamp": testNow}
		}, func(_, _ string) string { return "revoke_subaccount" + ms(testNow) + string(tok) },
			func(_, _ string) string {
				return "revoke_subaccount" + ms(testNow) + base64.StdEncoding.EncodeToString(tok)
			}},
		{"unrevoke_subaccount", grp, func(_, _ string) map[string]any {
			return map[string]any{"unrevoke": []string{hex.EncodeToString(tok)}, "timestamp": testNow}
		}, func(_, _ string) string { return "unrevoke_subaccount" + ms(testNow) + string(tok) },
			func(_, _ string) string { return "unrevoke_subaccount" + ms(testNow) + hex.EncodeToString(tok) }},
		{"revoked_subaccounts", grp, func(_, _ string) map[string]any { return map[string]any{"timestamp": testNow} },
			func(_, _ string) string { return "revoked_subaccounts" + ms(testNow) }, func(_, _ string) string { return "revoked_subaccount" + ms(testNow) }},
	}
	for i, r := range rows {
		t.Run(fmt.Sprintf("%s/%d", r.method, i), func(t *testing.T) {
			for _, c := range []struct {
				msg    func(h1, h2 string) string
				status int
			}{{r.bad, http.StatusUnauthorized}, {r.good, http.StatusOK}} {
				n := newTestNode(t, 1)
				h1 := put(t, n, r.acct, 0, "first", day)
				h2 := put(t, n, r.acct, 0, "second", day)
				msg := c.msg(h1, h2)
				status, _, raw := n.do(t, r.method, r.acct.signed(msg, r.params(h1, h2)))
				if status != c.status {
					t.Fatalf("signed over %q: status %d, want %d: %s", msg, status, c.status, raw)
				}
			}
		})
	}
}

func b64sig(t *testing.T, v any) []byte {
	t.Helper()
	s, _ := v.(string)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 64 {
		t.Fatalf("signature field %v is not b64 of 64 bytes", v)
	}
	return b
}

// §4.1, §4.3, §4.4, §4.6, §4.7: what the node signs in its swarm entry.
func TestSpecNodeSignatures(t *testing.T) {
	user := sessionAcct(t, 50)
	other := sessionAcct(t, 51)
	nodeSig := func(t *testing.T, n *testNode, e map[string]any, msg string) {
		t.Helper()
		if !ed25519.Verify(n.keys.Ed25519Pub, []byte(msg), b64sig(t, e["signature"])) {
			t.Fatalf("entry signature does not cover %q (entry %v)", msg, e)
		}
	}
	t.Run("store signs the hash", func(t *testing.T) {
		n := newTestNode(t, 1)
		_, body, _ := n.do(t, "store", user.signed("store"+ms(testNow), map[string]any{"timestamp": testNow, "ttl": day, "data": "YQ=="}))
		nodeSig(t, n, n.mine(t, body), specHash(user, 0, []byte("a")))
	})
	t.Run("delete signs PUBKEY_HEX, requested in order, deleted sorted", func(t *testing.T) {
		n := newTestNode(t, 1)
		h1 := put(t, n, user, 0, "one", day)
		h2 := put(t, n, user, 5, "two", day)
		foreign := put(t, n, other, 0, "not yours", day)
		missing := strings.Repeat("A", 43)
		req := []string{missing, h2, foreign, h1}
		status, body, raw := n.do(t, "delete", user.signed("delete"+strings.Join(req, ""), map[string]any{"messages": req}))
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		e := n.mine(t, body)
		deleted := []string{h1, h2}
		sort.Strings(deleted)
		if got := jsonOf(t, e["deleted"]); got != jsonOf(t, deleted) {
			t.Fatalf("deleted %s, want %s (only the account's own, sorted)", got, jsonOf(t, deleted))
		}
		nodeSig(t, n, e, user.hex()+strings.Join(req, "")+strings.Join(deleted, ""))
	})
	t.Run("delete_all all: per-namespace lists, one global sort in the signature", func(t *testing.T) {
		n := newTestNode(t, 1)
		var all []string
		byNS := map[string][]string{}
		for i, ns := range []int{0, 5, 0, -30, 5} {
			h := put(t, n, user, ns, "m"+strconv.Itoa(i), day)
			all = append(all, h)
			byNS[strconv.Itoa(ns)] = append(byNS[strconv.Itoa(ns)], h)
		}
		sort.Strings(all)
		status, body, raw := n.do(t, "delete_all", user.signed("delete_allall"+ms(testNow), map[string]any{"namespace": "all", "timestamp": testNow}))
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		e := n.mine(t, body)
		got, ok := e["deleted"].(map[string]any)
		if !ok || len(got) != len(byNS) {
			t.Fatalf("deleted %v, want an object keyed by namespace %v", e["deleted"], byNS)
		}
		for ns, hs := range byNS {
			sort.Strings(hs)
			var g []string
			for _, h := range got[ns].([]any) {
				g = append(g, h.(string))
			}
			sort.Strings(g)
			if strings.Join(g, ",") != strings.Join(hs, ",") {
				t.Fatalf("namespace %s deleted %v, want %v", ns, g, hs)
			}
		}
		nodeSig(t, n, e, user.hex()+ms(testNow)+strings.Join(all, ""))
	})
	t.Run("delete_all one namespace: sorted list", func(t *testing.T) {
		n := newTestNode(t, 1)
		a := put(t, n, user, 0, "x", day)
		b := put(t, n, user, 0, "y", day)
		put(t, n, user, 5, "z", day)
		_, body, _ := n.do(t, "delete_all", user.signed("delete_all"+ms(testNow), map[string]any{"timestamp": testNow}))
		e := n.mine(t, body)
		want := []string{a, b}
		sort.Strings(want)
		if jsonOf(t, e["deleted"]) != jsonOf(t, want) {
			t.Fatalf("deleted %v, want %v", e["deleted"], want)
		}
		nodeSig(t, n, e, user.hex()+ms(testNow)+strings.Join(want, ""))
	})
	t.Run("expire shorten: updated, unchanged hash‖expiry in hash order", func(t *testing.T) {
		n := newTestNode(t, 1)
		long := put(t, n, user, 0, "long", 3*day)
		short := put(t, n, user, 0, "short", day/2)
		target := testNow + day
		req := []string{short, long}
		status, body, raw := n.do(t, "expire", user.signed("expireshorten"+ms(target)+strings.Join(req, ""),
			map[string]any{"messages": req, "expiry": target, "shorten": true}))
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		e := n.mine(t, body)
		if jsonOf(t, e["updated"]) != jsonOf(t, []string{long}) || e["expiry"] != float64(target) {
			t.Fatalf("entry %v: want updated [%s] and expiry %d", e, long, target)
		}
		if jsonOf(t, e["unchanged"]) != jsonOf(t, map[string]int64{short: testNow + day/2}) {
			t.Fatalf("unchanged %v, want {%s: %d}", e["unchanged"], short, testNow+day/2)
		}
		nodeSig(t, n, e, user.hex()+ms(target)+strings.Join(req, "")+long+short+ms(testNow+day/2))
	})
	t.Run("expire with an expiry array: applied expiries of updated, concatenated", func(t *testing.T) {
		n := newTestNode(t, 1)
		a := put(t, n, user, 0, "a", day)
		b := put(t, n, user, 0, "b", day)
		ea, eb := testNow+2*day, testNow+3*day
		req := []string{a, b}
		status, body, raw := n.do(t, "expire", user.signed("expire"+ms(ea)+ms(eb)+a+b, map[string]any{"messages": req, "expiry": []int64{ea, eb}}))
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		e := n.mine(t, body)
		type he struct {
			h string
			e int64
		}
		pairs := []he{{a, ea}, {b, eb}}
		sort.Slice(pairs, func(i, j int) bool { return pairs[i].h < pairs[j].h })
		wantUpd := []string{pairs[0].h, pairs[1].h}
		wantExp := []int64{pairs[0].e, pairs[1].e}
		if jsonOf(t, e["updated"]) != jsonOf(t, wantUpd) || jsonOf(t, e["expiry"]) != jsonOf(t, wantExp) {
			t.Fatalf("entry %v: want updated %v expiry %v", e, wantUpd, wantExp)
		}
		if _, has := e["unchanged"]; has {
			t.Fatalf("unchanged present without shorten/extend: %v", e)
		}
		nodeSig(t, n, e, user.hex()+ms(wantExp[0])+ms(wantExp[1])+a+b+strings.Join(wantUpd, ""))
	})
	t.Run("expire caps at now+30 days and signs the capped value", func(t *testing.T) {
		n := newTestNode(t, 1)
		a := put(t, n, user, 0, "a", day)
		far := testNow + 40*day
		_, body, _ := n.do(t, "expire", user.signed("expire"+ms(far)+a, map[string]any{"messages": []string{a}, "expiry": far}))
		e := n.mine(t, body)
		capped := testNow + 30*day
		if e["expiry"] != float64(capped) {
			t.Fatalf("expiry %v, want capped %d", e["expiry"], capped)
		}
		nodeSig(t, n, e, user.hex()+ms(capped)+a+a)
	})
}

// §16: delete, delete_all, expire, get_expiries without a signature fail
// in the parser (400 "Required field 'signature' missing"); store to an
// authenticated namespace and retrieve answer 401.
func TestSpecMissingSignature(t *testing.T) {
	user := sessionAcct(t, 60)
	h := specHash(user, 0, []byte("x"))
	cases := []struct {
		method string
		params map[string]any
		status int
		text   string
	}{
		{"delete", map[string]any{"messages": []string{h}}, 400, "invalid request: Required field 'signature' missing"},
		{"delete_all", map[string]any{"timestamp": testNow}, 400, "invalid request: Required field 'signature' missing"},
		{"delete_before", map[string]any{"before": testNow}, 400, "invalid request: Required field 'signature' missing"},
		{"expire_all", map[string]any{"expiry": testNow + day}, 400, "invalid request: Required field 'signature' missing"},
		{"expire", map[string]any{"messages": []string{h}, "expiry": testNow + day}, 400, "invalid request: Required field 'signature' missing"},
		{"get_expiries", map[string]any{"messages": []string{h}, "timestamp": testNow}, 400, "invalid request: Required field 'signature' missing"},
		{"store", map[string]any{"namespace": 3, "timestamp": testNow, "ttl": day, "data": "eA=="}, 401, "store: signature required to store to namespace 3"},
		{"retrieve", map[string]any{}, 401, "retrieve: request signature required"},
		{"retrieve", map[string]any{"namespace": 4}, 401, "retrieve: request signature required"},
		// no-auth namespaces: −10 and public outboxes
		{"retrieve", map[string]any{"namespace": -10}, 200, ""},
		{"retrieve", map[string]any{"namespace": -21}, 200, ""},
		// public inboxes store unsigned
		{"store", map[string]any{"namespace": -30, "timestamp": testNow, "ttl": day, "data": "eA=="}, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.method+" "+jsonOf(t, c.params["namespace"]), func(t *testing.T) {
			n := newTestNode(t, 1)
			c.params["pubkey"] = user.hex()
			status, _, raw := n.do(t, c.method, c.params)
			if status != c.status || (c.text != "" && raw != c.text) {
				t.Fatalf("%d %q, want %d %q", status, raw, c.status, c.text)
			}
		})
	}
}

// §3.1 step 2 and §2.1: which key verifies a request.
func TestSpecVerificationKey(t *testing.T) {
	session := sessionAcct(t, 70)
	edAs05 := edAcct(0x05, 71) // upstream network tests: 05 + ed25519 bytes, verified directly
	group := edAcct(0x03, 72)
	odd := edAcct(0x2a, 73)
	noEd := session
	noEd.session = false
	wrongEd := session
	cases := []struct {
		name   string
		a      acct
		tweak  func(p map[string]any)
		status int
		text   string
	}{
		{"05 Session ID with pubkey_ed25519", session, nil, 200, ""},
		{"05 Session ID without pubkey_ed25519 (X25519 bytes are no Ed25519 key)", noEd, nil, 401, "retrieve signature verification failed"},
		{"05 with Ed25519 bytes, verified directly", edAs05, nil, 200, ""},
		{"05 with pubkey_ed25519 of another key", wrongEd, func(p map[string]any) { p["pubkey_ed25519"] = edAcct(0x05, 99).edHex() }, 401, "retrieve signature verification failed"},
		{"03 group key", group, nil, 200, ""},
		{"other prefix: key bytes as Ed25519", odd, nil, 200, ""},
		{"pubkey_ed25519 on a 03 account", group, func(p map[string]any) { p["pubkey_ed25519"] = group.edHex() }, 400, "invalid request: pubkey_ed25519 is only permitted for 05[...] pubkeys"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newTestNode(t, 1)
			p := c.a.signed("retrieve"+ms(testNow), map[string]any{"timestamp": testNow})
			if c.tweak != nil {
				c.tweak(p)
			}
			status, _, raw := n.do(t, "retrieve", p)
			if status != c.status || (c.text != "" && raw != c.text) {
				t.Fatalf("%d %q, want %d %q", status, raw, c.status, c.text)
			}
		})
	}
}

// §3.1: the subaccount flags each method requires. For every method the
// token with exactly the required flags passes and each token missing one
// of them fails.
func TestSpecSubaccountFlagsPerMethod(t *testing.T) {
	const r, w, d = 0x01, 0x02, 0x04
	group := edAcct(0x03, 80)
	sub := ed25519.NewKeyFromSeed(seed32(81))
	cases := []struct {
		method string
		need   byte
		params func(h string) (map[string]any, string)
	}{
		{"store", w, func(string) (map[string]any, string) {
			return map[string]any{"namespace": 11, "timestamp": testNow, "ttl": day, "data": "eQ=="}, "store11" + ms(testNow)
		}},
		{"store", w | d, func(string) (map[string]any, string) { // public outbox
			return map[string]any{"namespace": -21, "timestamp": testNow, "ttl": day, "data": "eQ=="}, "store-21" + ms(testNow)
		}},
		{"retrieve", r, func(string) (map[string]any, string) {
			return map[string]any{"namespace": 11, "timestamp": testNow}, "retrieve11" + ms(testNow)
		}},
		{"delete", d, func(h string) (map[string]any, string) { return map[string]any{"messages": []string{h}}, "delete" + h }},
		{"delete_all", d, func(string) (map[string]any, string) {
			return map[string]any{"namespace": 11, "timestamp": testNow}, "delete_all11" + ms(testNow)
		}},
		{"delete_before", d, func(string) (map[string]any, string) {
			return map[string]any{"namespace": 11, "before": testNow}, "delete_before11" + ms(testNow)
		}},
		{"expire_all", d, func(string) (map[string]any, string) {
			return map[string]any{"namespace": 11, "expiry": testNow + day}, "expire_all11" + ms(testNow+day)
		}},
		{"expire", w, func(h string) (map[string]any, string) {
			return map[string]any{"messages": []string{h}, "expiry": testNow + 2*day}, "expire" + ms(testNow+2*day) + h
		}},
		{"get_expiries", r, func(h string) (map[string]any, string) {
			return map[string]any{"messages": []string{h}, "timestamp": testNow}, "get_expiries" + ms(testNow) + h
		}},
	}
	for _, c := range cases {
		variants := []byte{c.need}
		for bit := byte(1); bit <= 4; bit <<= 1 {
			if c.need&bit != 0 {
				variants = append(variants, c.need&^bit)
			}
		}
		for _, flags := range variants {
			t.Run(fmt.Sprintf("%s need %03b token %03b", c.method, c.need, flags), func(t *testing.T) {
				n := newTestNode(t, 1)
				h := put(t, n, group, 11, "group message", day)
				tok := append([]byte{0x03, flags, 0, 0}, sub.Public().(ed25519.PublicKey)...)
				p, msg := c.params(h)
				p["pubkey"] = group.hex()
				p["subaccount"] = base64.StdEncoding.EncodeToString(tok)
				p["subaccount_sig"] = base64.StdEncoding.EncodeToString(ed25519.Sign(group.priv, tok))
				p["signature"] = base64.StdEncoding.EncodeToString(ed25519.Sign(sub, []byte(msg)))
				status, _, raw := n.do(t, c.method, p)
				want := http.StatusUnauthorized
				if flags == c.need {
					want = http.StatusOK
				}
				if status != want {
					t.Fatalf("%d %s, want %d", status, raw, want)
				}
			})
		}
	}
	t.Run("revoke_subaccount takes no subaccount", func(t *testing.T) {
		n := newTestNode(t, 1)
		tok := append([]byte{0x03, 0x0f, 0, 0}, sub.Public().(ed25519.PublicKey)...)
		msg := "revoke_subaccount" + ms(testNow) + string(tok)
		p := map[string]any{"pubkey": group.hex(), "revoke": hex.EncodeToString(tok), "timestamp": testNow,
			"subaccount": base64.StdEncoding.EncodeToString(tok), "subaccount_sig": base64.StdEncoding.EncodeToString(ed25519.Sign(group.priv, tok)),
			"signature": base64.StdEncoding.EncodeToString(ed25519.Sign(sub, []byte(msg)))}
		if status, _, raw := n.do(t, "revoke_subaccount", p); status != http.StatusUnauthorized {
			t.Fatalf("a subaccount-signed revoke answered %d %s", status, raw)
		}
	})
}

// §4.1, §3.2, §12: TTL by namespace kind and the store clock window.
func TestSpecStoreWindows(t *testing.T) {
	user := sessionAcct(t, 90)
	cases := []struct {
		name       string
		ns         int
		ts, ttl    int64
		status     int
		wantExpiry int64
	}{
		{"minimum TTL 10 s", 0, testNow, 10000, 200, testNow + 10000},
		{"TTL just under 10 s", 0, testNow, 9999, 403, 0},
		{"public inbox 0: 14 days", 0, testNow, 14 * day, 200, testNow + 14*day},
		{"public inbox 0: 14 days + 1 ms", 0, testNow, 14*day + 1, 403, 0},
		{"public inbox 10: 14 days + 1 ms", 10, testNow, 14*day + 1, 403, 0},
		{"public inbox -30: 14 days + 1 ms", -30, testNow, 14*day + 1, 403, 0},
		{"private 3: 30 days", 3, testNow, 30 * day, 200, testNow + 30*day},
		{"private 3: 30 days + 1 ms", 3, testNow, 30*day + 1, 403, 0},
		{"public outbox -21 is not an inbox: 30 days", -21, testNow, 30 * day, 200, testNow + 30*day},
		{"unrevocable -11: 30 days + 1 ms", -11, testNow, 30*day + 1, 403, 0},
		{"timestamp now+10 s", 0, testNow + 10000, day, 200, testNow + 10000 + day},
		{"timestamp now+10.001 s", 0, testNow + 10001, day, 406, 0},
		{"expiry now−10 s", 0, testNow - 20000, 10000, 200, testNow - 10000},
		{"expiry now−10.001 s", 0, testNow - 20001, 10000, 406, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newTestNode(t, 1)
			nsStr := ""
			if c.ns != 0 {
				nsStr = strconv.Itoa(c.ns)
			}
			p := user.signed("store"+nsStr+ms(testNow), map[string]any{"namespace": c.ns, "timestamp": c.ts, "ttl": c.ttl,
				"data": "eA==", "sig_timestamp": testNow})
			status, body, raw := n.do(t, "store", p)
			if status != c.status {
				t.Fatalf("%d %s, want %d", status, raw, c.status)
			}
			switch status {
			case 200:
				if e := n.mine(t, body); e["expiry"] != float64(c.wantExpiry) {
					t.Fatalf("expiry %v, want %d", e["expiry"], c.wantExpiry)
				}
			case 403:
				if raw != "Provided expiry/TTL is not valid." {
					t.Fatalf("403 text %q", raw)
				}
			case 406:
				if raw != "Timestamp error: check your clock" {
					t.Fatalf("406 text %q", raw)
				}
			}
		})
	}
}

// §4.2: size accounting 100 + len(hash) + ⌊len(data)·4/3⌋ per message,
// at least one message, "more" when something was left.
func TestSpecRetrieveSizeAccounting(t *testing.T) {
	user := sessionAcct(t, 95)
	const each = 100 + 43 + 300*4/3 // 543 for 300-byte messages
	cases := []struct {
		name      string
		limits    map[string]any
		count     int
		more      bool
		afterLast bool
	}{
		{"max_size two messages exactly", map[string]any{"max_size": 2 * each}, 2, true, false},
		{"max_size one byte short of two", map[string]any{"max_size": 2*each - 1}, 1, true, false},
		{"max_size 1 still returns one", map[string]any{"max_size": 1}, 1, true, false},
		{"max_size −k is 7,800,000/k", map[string]any{"max_size": -(7800000 / (2 * each))}, 2, true, false},
		{"max_count 2", map[string]any{"max_count": 2}, 2, true, false},
		{"max_count 3 takes all", map[string]any{"max_count": 3}, 3, false, false},
		{"neither: default 1/5 of the maximum", map[string]any{}, 3, false, false},
		{"zero is unset", map[string]any{"max_count": 0, "max_size": 0}, 3, false, false},
		{"after the first hash", map[string]any{}, 2, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newTestNode(t, 1)
			var hashes []string
			for i := 0; i < 3; i++ {
				data := strings.Repeat(strconv.Itoa(i), 300)
				hashes = append(hashes, put(t, n, user, -10, data, day))
			}
			p := map[string]any{"pubkey": user.hex(), "namespace": -10}
			for k, v := range c.limits {
				p[k] = v
			}
			want := hashes
			if c.afterLast {
				p["last_hash"] = hashes[0]
				want = hashes[1:]
			}
			status, body, raw := n.do(t, "retrieve", p)
			if status != 200 {
				t.Fatalf("%d %s", status, raw)
			}
			msgs := body["messages"].([]any)
			if len(msgs) != c.count || body["more"] != c.more {
				t.Fatalf("%d messages more=%v, want %d more=%v", len(msgs), body["more"], c.count, c.more)
			}
			for i, m := range msgs {
				mm := m.(map[string]any)
				if mm["hash"] != want[i] || mm["expiration"] != float64(testNow+day) || mm["timestamp"] != float64(testNow) {
					t.Fatalf("message %d = %v, want hash %s in insertion order with timestamp and expiration", i, mm, want[i])
				}
				if _, has := mm["expiry"]; has {
					t.Fatalf("retrieve says expiry, the key is expiration: %v", mm)
				}
			}
			if body["t"] != float64(testNow) || body["hf"] == nil {
				t.Fatalf("t/hf missing: %v", body)
			}
		})
	}
}

// §2.5, §6.2: "t" and "hf" on the answers the spec lists; the 421 body is
// the swarm JSON.
func TestSpecTimeHardforkAnd421(t *testing.T) {
	user := sessionAcct(t, 97)
	t.Run("t and hf", func(t *testing.T) {
		n := newTestNode(t, 1)
		h := put(t, n, user, 0, "x", day)
		for _, c := range []struct {
			method string
			params map[string]any
		}{
			{"store", map[string]any{"pubkey": user.hex(), "timestamp": testNow, "ttl": day, "data": "eQ=="}},
			{"retrieve", user.signed("retrieve"+ms(testNow), map[string]any{"timestamp": testNow})},
			{"info", map[string]any{}},
			{"get_swarm", map[string]any{"pubkey": user.hex()}},
			{"get_snodes_for_pubkey", map[string]any{"pubKey": user.hex()}},
			{"delete", user.signed("delete"+h, map[string]any{"messages": []string{h}})},
		} {
			status, body, raw := n.do(t, c.method, c.params)
			if status != 200 || body["t"] != float64(testNow) || jsonOf(t, body["hf"]) != "[19,6]" {
				t.Errorf("%s: %d t=%v hf=%v: %s", c.method, status, body["t"], body["hf"], raw)
			}
		}
	})
	t.Run("421 wrong swarm", func(t *testing.T) {
		n := newTestNode(t, 1)
		owner := nodeFor(seedKeys(t, 5), 30000)
		n.swarm.ours, n.swarm.id, n.swarm.members = false, 0xabc0000000000001, []registry.Node{owner}
		for _, method := range []string{"store", "retrieve", "delete_all", "expire", "get_expiries"} {
			p := map[string]any{"pubkey": user.hex(), "timestamp": testNow, "data": "eQ==",
				"signature": base64.StdEncoding.EncodeToString(make([]byte, 64)), "messages": []string{strings.Repeat("B", 43)}, "expiry": testNow + day}
			if method == "store" {
				delete(p, "expiry")
				p["ttl"] = day
			}
			status, body, raw := n.do(t, method, p)
			if status != http.StatusMisdirectedRequest {
				t.Fatalf("%s: %d %s", method, status, raw)
			}
			keys := make([]string, 0, len(body))
			for k := range body {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if strings.Join(keys, ",") != "hf,snodes,swarm,t" || body["swarm"] != "abc0000000000001" {
				t.Fatalf("%s 421 body keys %v swarm %v", method, keys, body["swarm"])
			}
			sn := body["snodes"].([]any)[0].(map[string]any)
			want := map[string]any{
				"address": identityAddress(owner), "ip": "127.0.0.1", "port": "30000", "port_https": float64(30000),
				"port_omq": float64(30001), "port_quic": float64(30001), "pubkey_ed25519": owner.Ed25519Hex(),
				"pubkey_legacy": hex.EncodeToString(owner.Legacy[:]), "pubkey_x25519": hex.EncodeToString(owner.X25519[:]),
			}
			if jsonOf(t, sn) != jsonOf(t, want) {
				t.Fatalf("snode %s, want %s", jsonOf(t, sn), jsonOf(t, want))
			}
			if !strings.HasSuffix(sn["address"].(string), ".snode") {
				t.Fatalf("address %v", sn["address"])
			}
		}
	})
}

// §1.1: method and params are found by their exact key (the reference's
// JSON library does not fold case); extra keys are ignored.
func TestSpecTopLevelKeys(t *testing.T) {
	cases := []struct {
		body   string
		status int
		text   string
	}{
		{`{"jsonrpc":"2.0","method":"info","params":{},"id":1}`, 200, ""},
		{`{"Method":"info","params":{}}`, 400, "invalid json: no `method` field"},
		{`{"METHOD":"info","method":"nope","params":{}}`, 400, "no method nope"},
		{`{"method":"nope","METHOD":"info","params":{}}`, 400, "no method nope"},
		{`{"method":"info","Params":{}}`, 400, "invalid json: no `params` field"},
		{`{"method":"info","params":{},"PARAMS":5}`, 200, ""},
		{`{"method":"info","paramſ":{}}`, 400, "invalid json: no `params` field"},
		{`{"meth\u006fd":"info","params":{}}`, 200, ""},
		{`{"data":"a\"Method\":\"x","method":"info","params":{"s":"}\\"}}`, 200, ""},
		{`{"method":"info","params":[]}`, 400, "invalid json: no `params` field"},
		{`{"method":5,"params":{}}`, 400, "invalid json: no `method` field"},
		{`{"method":"info","params":{}} x`, 400, "invalid json"},
		{`[]`, 400, "invalid json"},
	}
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			n := newTestNode(t, 1)
			status, out, _ := n.srv.Invoke(context.Background(), []byte(c.body))
			if status != c.status || (c.text != "" && string(out) != c.text) {
				t.Fatalf("%d %q, want %d %q", status, out, c.status, c.text)
			}
		})
	}
}

// §6.4: a member failure is "timeout" (timed out, or unreachable: the
// reference only ever sees a timeout for those), code+reason for an error
// reply, bad_peer_response for an unreadable one, and a bare "failed" for
// anything else.
func TestSpecMemberFailureKinds(t *testing.T) {
	user := sessionAcct(t, 98)
	cases := []struct {
		name  string
		reply MemberReply
		want  string
	}{
		{"timeout", MemberReply{Err: fmt.Errorf("x: %w", peer.ErrTimeout)}, `{"failed":true,"timeout":true}`},
		{"unreachable", MemberReply{Err: fmt.Errorf("x: %w", peer.ErrUnreachable)}, `{"failed":true,"timeout":true}`},
		{"other transport failure", MemberReply{Err: errors.New("reply exceeds 10485760 bytes")}, `{"failed":true}`},
		{"error reply", MemberReply{Reply: peer.Reply{Status: 401, Body: []byte("store signature verification failed")}},
			`{"code":401,"failed":true,"reason":"store signature verification failed"}`},
		{"unreadable reply", MemberReply{Reply: peer.Reply{Status: 200, Body: []byte("le")}}, `{"bad_peer_response":true,"failed":true}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newTestNode(t, 1)
			member := nodeFor(seedKeys(t, 9), 1)
			c.reply.Node = member
			n.swarm.replicate = func(context.Context, string, []byte) []MemberReply { return []MemberReply{c.reply} }
			status, body, raw := n.do(t, "store", map[string]any{"pubkey": user.hex(), "timestamp": testNow, "ttl": day, "data": "eQ=="})
			if status != 200 {
				t.Fatalf("%d %s", status, raw)
			}
			if got := jsonOf(t, body["swarm"].(map[string]any)[member.Ed25519Hex()]); got != c.want {
				t.Fatalf("entry %s, want %s", got, c.want)
			}
		})
	}
}

// §6.4: what the entry node forwards: the original fields, binary raw,
// namespace omitted when 0, flags as 1.
func TestSpecForwardedBT(t *testing.T) {
	user := sessionAcct(t, 99)
	n := newTestNode(t, 1)
	var got []byte
	n.swarm.replicate = func(_ context.Context, _ string, bt []byte) []MemberReply { got = bt; return nil }
	h := put(t, n, user, 0, "x", day)
	want := fmt.Sprintf("d4:data1:x6:expiryi%de6:pubkey33:%s14:pubkey_ed2551932:%s13:sig_timestampi%de9:signature64:%s9:timestampi%dee",
		testNow+day, raw33(user), rawEd(user), testNow, rawSig(user, "store"+ms(testNow)), testNow)
	if string(got) != want {
		t.Fatalf("forwarded store\n got %q\nwant %q", got, want)
	}
	n.do(t, "expire", user.signed("expireextend"+ms(testNow+2*day)+h, map[string]any{"messages": h, "expiry": testNow + 2*day, "extend": true}))
	want = fmt.Sprintf("d6:expiryi%de6:extendi1e8:messagesl43:%se6:pubkey33:%s14:pubkey_ed2551932:%s9:signature64:%se",
		testNow+2*day, h, raw33(user), rawEd(user), rawSig(user, "expireextend"+ms(testNow+2*day)+h))
	if string(got) != want {
		t.Fatalf("forwarded expire\n got %q\nwant %q", got, want)
	}
	n.do(t, "delete_all", user.signed("delete_allall"+ms(testNow), map[string]any{"namespace": "all", "timestamp": testNow}))
	want = fmt.Sprintf("d9:namespace3:all6:pubkey33:%s14:pubkey_ed2551932:%s9:signature64:%s9:timestampi%dee",
		raw33(user), rawEd(user), rawSig(user, "delete_allall"+ms(testNow)), testNow)
	if string(got) != want {
		t.Fatalf("forwarded delete_all\n got %q\nwant %q", got, want)
	}
}

func raw33(a acct) string { return string(append([]byte{a.typ}, a.key[:]...)) }
func rawEd(a acct) string { return string(a.priv.Public().(ed25519.PublicKey)) }
func rawSig(a acct, msg string) string {
	return string(ed25519.Sign(a.priv, []byte(msg)))
}

// §2.6, §4.3–§4.8: the status codes of the time windows and of
// delete's "required".
func TestSpecStatusCodes(t *testing.T) {
	user := sessionAcct(t, 100)
	const minute = int64(60000)
	cases := []struct {
		name   string
		method string
		params func(h string) (map[string]any, string)
		status int
	}{
		{"delete_before 60 s ahead", "delete_before", func(string) (map[string]any, string) {
			return map[string]any{"before": testNow + minute}, "delete_before" + ms(testNow+minute)
		}, 200},
		{"delete_before more than 60 s ahead: 401", "delete_before", func(string) (map[string]any, string) {
			return map[string]any{"before": testNow + minute + 1}, "delete_before" + ms(testNow+minute+1)
		}, 401},
		{"expire to 60 s ago", "expire", func(h string) (map[string]any, string) {
			return map[string]any{"messages": h, "expiry": testNow - minute}, "expire" + ms(testNow-minute) + h
		}, 200},
		{"expire to more than 60 s ago: 401", "expire", func(h string) (map[string]any, string) {
			return map[string]any{"messages": h, "expiry": testNow - minute - 1}, "expire" + ms(testNow-minute-1) + h
		}, 401},
		{"expire_all to more than 60 s ago: 406", "expire_all", func(string) (map[string]any, string) {
			return map[string]any{"expiry": testNow - minute - 1}, "expire_all" + ms(testNow-minute-1)
		}, 406},
		{"delete_all timestamp 60 s old", "delete_all", func(string) (map[string]any, string) {
			return map[string]any{"timestamp": testNow - minute}, "delete_all" + ms(testNow-minute)
		}, 200},
		{"delete_all timestamp over 60 s ahead: 406", "delete_all", func(string) (map[string]any, string) {
			return map[string]any{"timestamp": testNow + minute + 1}, "delete_all" + ms(testNow+minute+1)
		}, 406},
		{"retrieve timestamp over 60 s old: 406", "retrieve", func(string) (map[string]any, string) {
			return map[string]any{"timestamp": testNow - minute - 1}, "retrieve" + ms(testNow-minute-1)
		}, 406},
		{"get_expiries timestamp over 60 s ahead: 406", "get_expiries", func(h string) (map[string]any, string) {
			return map[string]any{"messages": h, "timestamp": testNow + minute + 1}, "get_expiries" + ms(testNow+minute+1) + h
		}, 406},
		{"delete required, something deleted", "delete", func(h string) (map[string]any, string) {
			return map[string]any{"messages": h, "required": true}, "delete" + h
		}, 200},
		{"delete required, nothing deleted: 404", "delete", func(string) (map[string]any, string) {
			h := strings.Repeat("C", 43)
			return map[string]any{"messages": h, "required": true}, "delete" + h
		}, 404},
		{"delete not required, nothing deleted", "delete", func(string) (map[string]any, string) {
			h := strings.Repeat("C", 43)
			return map[string]any{"messages": h}, "delete" + h
		}, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newTestNode(t, 1)
			h := put(t, n, user, 0, "x", day)
			p, msg := c.params(h)
			if status, _, raw := n.do(t, c.method, user.signed(msg, p)); status != c.status {
				t.Fatalf("%d %s, want %d", status, raw, c.status)
			}
		})
	}
}

// FuzzTopLevelKeys checks parseJSONRequest against the plain reading of
// §1.1: method = the exact "method" key's string, params = the exact
// "params" key's object, the last duplicate winning.
func FuzzTopLevelKeys(f *testing.F) {
	for _, s := range []string{
		`{"method":"info","params":{}}`, `{"Method":"info","params":{}}`, `{"method":"x","METHOD":"y","params":{"a":1}}`,
		`{"params":5,"params":{},"method":"m"}`, `{"params":{},"params":5,"method":"m"}`, `{"a":"\\\"method\"","method":"m","params":{"b":[{"c":"]"}]}}`,
		`{"meth\u006fd":"m","pAraMs":{}}`, `{"method":"m","paramſ":{}}`, ` { "method" : "m" , "params" : { } } `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		method, ps, bad := parseJSONRequest(body)
		var all map[string]json.RawMessage
		if json.Unmarshal(body, &all) != nil || all == nil {
			if bad == nil {
				t.Fatalf("accepted %q, which is no JSON object", body)
			}
			return
		}
		var wantMethod string
		rawM := bytes.TrimSpace(all["method"])
		methodOK := len(rawM) > 0 && rawM[0] == '"' && json.Unmarshal(rawM, &wantMethod) == nil
		var wantParams map[string]json.RawMessage
		paramsOK := json.Unmarshal(all["params"], &wantParams) == nil && wantParams != nil
		switch {
		case !methodOK:
			if bad == nil || bad.body != "invalid json: no `method` field" {
				t.Fatalf("%q: want no method field, got %q %v", body, method, bad)
			}
		case !paramsOK:
			if bad == nil || bad.body != "invalid json: no `params` field" {
				t.Fatalf("%q: want no params field, got %v", body, bad)
			}
		default:
			if bad != nil || method != wantMethod || len(ps) != len(wantParams) {
				t.Fatalf("%q: got %q %d params %v, want %q %d params", body, method, len(ps), bad, wantMethod, len(wantParams))
			}
		}
	})
}
