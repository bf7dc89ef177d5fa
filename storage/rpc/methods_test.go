package rpc

import (
	"encoding/base64"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// seed stores messages "m0".."m{n-1}" in ns with timestamps testNow-n+i.
func seedMessages(t *testing.T, n *testNode, s *rpcclient.Signer, ns storage.Namespace, count int) []string {
	t.Helper()
	var out []string
	for i := 0; i < count; i++ {
		p := s.Store(rpcclient.StoreArgs{Namespace: ns, Data: []byte("m" + strconv.Itoa(i) + ns.SigString()), Timestamp: testNow - int64(count) + int64(i), TTL: day})
		status, body, raw := n.do(t, "store", p)
		if status != 200 {
			t.Fatalf("seed store: %d %s", status, raw)
		}
		out = append(out, body["hash"].(string))
	}
	return out
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

// §4.3 delete: only the owner's messages; the entry is signed over
// PUBKEY_HEX ‖ requested… ‖ deleted (sorted)….
func TestDelete(t *testing.T) {
	n := newTestNode(t, 1)
	u := sessionSigner(t, 7)
	other := sessionSigner(t, 8)
	hs := seedMessages(t, n, u, 0, 3)
	foreign := seedMessages(t, n, other, 0, 1)
	req := []string{hs[2], hs[0], foreign[0]}
	status, body, raw := n.do(t, "delete", u.Delete(req, false))
	if status != 200 {
		t.Fatalf("delete: %d %s", status, raw)
	}
	e := n.mine(t, body)
	got := strs(e["deleted"])
	want := sortedCopy([]string{hs[0], hs[2]})
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("deleted %v, want %v (sorted, own messages only)", got, want)
	}
	checkNodeSig(t, n.keys, e["signature"], u.Pubkey()+strings.Join(req, "")+strings.Join(want, ""))
	// required: nothing left to delete → 404
	status, _, raw = n.do(t, "delete", u.Delete([]string{hs[0]}, true))
	if status != 404 {
		t.Fatalf("required delete of nothing: %d %s", status, raw)
	}
	status, _, _ = n.do(t, "delete", u.Delete([]string{hs[1]}, true))
	if status != 200 {
		t.Fatalf("required delete of something: %d", status)
	}
	for _, c := range []struct {
		name string
		p    map[string]any
		text string
	}{
		{"no signature (§16: 400)", func() map[string]any { p := u.Delete(hs[:1], false); delete(p, "signature"); return p }(), "invalid request: Required field 'signature' missing"},
		{"no messages", func() map[string]any { p := u.Delete(hs[:1], false); delete(p, "messages"); return p }(), "invalid request: Required field 'messages' missing"},
		{"empty messages", u.Delete([]string{}, false), "invalid request: messages does not contain any message hashes"},
		{"bad hash", u.Delete([]string{"short"}, false), "invalid request: invalid message hash: short"},
		{"messages of the wrong type", func() map[string]any { p := u.Delete(hs[:1], false); p["messages"] = []int{1}; return p }(), "invalid request: Invalid value given for 'messages': expected string array"},
		{"required of the wrong type", func() map[string]any { p := u.Delete(hs[:1], false); p["required"] = "yes"; return p }(), "invalid request: Invalid value given for 'required': expected boolean"},
	} {
		if status, _, raw := n.do(t, "delete", c.p); status != 400 || raw != c.text {
			t.Errorf("%s: %d %q, want 400 %q", c.name, status, raw, c.text)
		}
	}
	p := u.Delete(hs[:1], false)
	p["messages"] = hs[1:2]
	if status, _, raw := n.do(t, "delete", p); status != 401 || raw != "delete_msgs signature verification failed" {
		t.Fatalf("signature over other hashes: %d %s", status, raw)
	}
	// a single string is accepted as a one-element list
	h := seedMessages(t, n, u, 3, 1)[0]
	p = u.Delete([]string{h}, false)
	p["messages"] = h
	if status, body, raw := n.do(t, "delete", p); status != 200 || len(strs(n.mine(t, body)["deleted"])) != 1 {
		t.Fatalf("single-string messages: %d %s", status, raw)
	}
}

// §4.4–4.6: namespace-wide deletes and expiry, one namespace or "all".
func TestNamespaceWide(t *testing.T) {
	u := sessionSigner(t, 7)
	setup := func(t *testing.T) (*testNode, []string, []string) {
		n := newTestNode(t, 1)
		return n, seedMessages(t, n, u, 0, 3), seedMessages(t, n, u, 5, 2)
	}
	t.Run("delete_all one namespace", func(t *testing.T) {
		n, ns0, ns5 := setup(t)
		status, body, raw := n.do(t, "delete_all", u.DeleteAll(storage.NSFilter{NS: 5}, testNow))
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		e := n.mine(t, body)
		want := sortedCopy(ns5)
		if got := strs(e["deleted"]); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("deleted %v, want %v", got, want)
		}
		checkNodeSig(t, n.keys, e["signature"], u.Pubkey()+strconv.FormatInt(testNow, 10)+strings.Join(want, ""))
		if st, _ := n.store.Stats(), 0; st.Messages != int64(len(ns0)) {
			t.Fatalf("%d messages left, want %d", st.Messages, len(ns0))
		}
	})
	t.Run("delete_all all namespaces", func(t *testing.T) {
		n, ns0, ns5 := setup(t)
		status, body, raw := n.do(t, "delete_all", u.DeleteAll(storage.NSFilter{All: true}, testNow))
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		e := n.mine(t, body)
		byNS := e["deleted"].(map[string]any)
		if len(strs(byNS["0"])) != 3 || len(strs(byNS["5"])) != 2 {
			t.Fatalf("deleted by namespace %v", byNS)
		}
		all := sortedCopy(append(append([]string{}, ns0...), ns5...))
		checkNodeSig(t, n.keys, e["signature"], u.Pubkey()+strconv.FormatInt(testNow, 10)+strings.Join(all, ""))
	})
	t.Run("delete_before", func(t *testing.T) {
		n, ns0, _ := setup(t)
		before := testNow - 2 // the first two of ns 0 (timestamps now-3, now-2)
		status, body, raw := n.do(t, "delete_before", u.DeleteBefore(storage.NSFilter{}, before))
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		e := n.mine(t, body)
		want := sortedCopy(ns0[:2])
		if got := strs(e["deleted"]); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("deleted %v, want %v", got, want)
		}
		checkNodeSig(t, n.keys, e["signature"], u.Pubkey()+strconv.FormatInt(before, 10)+strings.Join(want, ""))
		status, _, raw = n.do(t, "delete_before", u.DeleteBefore(storage.NSFilter{}, testNow+61_000))
		if status != 401 || raw != "delete_before timestamp too far in the future" {
			t.Fatalf("future before: %d %s", status, raw)
		}
	})
	t.Run("expire_all shortens only", func(t *testing.T) {
		n, ns0, _ := setup(t)
		exp := testNow + 3600_000
		status, body, raw := n.do(t, "expire_all", u.ExpireAll(storage.NSFilter{}, exp))
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		e := n.mine(t, body)
		want := sortedCopy(ns0)
		if got := strs(e["updated"]); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("updated %v, want %v", got, want)
		}
		checkNodeSig(t, n.keys, e["signature"], u.Pubkey()+strconv.FormatInt(exp, 10)+strings.Join(want, ""))
		// a later expiry changes nothing
		_, body, _ = n.do(t, "expire_all", u.ExpireAll(storage.NSFilter{}, exp+1000))
		if got := n.mine(t, body)["updated"].([]any); len(got) != 0 {
			t.Fatalf("expire_all raised expiries: %v", got)
		}
		status, _, raw = n.do(t, "expire_all", u.ExpireAll(storage.NSFilter{}, testNow-61_000))
		if status != 406 || raw != "expire_all timestamp should be >= current time" {
			t.Fatalf("past expiry: %d %s", status, raw)
		}
	})
	t.Run("timestamps and signatures", func(t *testing.T) {
		n, _, _ := setup(t)
		for _, c := range []struct {
			method string
			p      map[string]any
			status int
			text   string
		}{
			{"delete_all", u.DeleteAll(storage.NSFilter{}, testNow-61_000), 406, "delete_all timestamp too far from current time"},
			{"delete_all", u.DeleteAll(storage.NSFilter{}, testNow+61_000), 406, "delete_all timestamp too far from current time"},
			{"delete_all", func() map[string]any { p := u.DeleteAll(storage.NSFilter{}, testNow); p["namespace"] = "all"; return p }(), 401, "delete_all signature verification failed"},
			{"delete_all", func() map[string]any {
				p := u.DeleteAll(storage.NSFilter{}, testNow)
				p["namespace"] = "some"
				return p
			}(), 400, `invalid request: Invalid value given for 'namespace': expected integer or "all"`},
			{"delete_all", func() map[string]any { p := u.DeleteAll(storage.NSFilter{}, testNow); delete(p, "timestamp"); return p }(), 400, "invalid request: Required field 'timestamp' missing"},
			{"delete_all", func() map[string]any { p := u.DeleteAll(storage.NSFilter{}, testNow); delete(p, "signature"); return p }(), 400, "invalid request: Required field 'signature' missing"},
			{"delete_before", func() map[string]any { p := u.DeleteBefore(storage.NSFilter{}, testNow); delete(p, "before"); return p }(), 400, "invalid request: Required field 'before' missing"},
			{"expire_all", func() map[string]any {
				p := u.ExpireAll(storage.NSFilter{}, testNow)
				p["expiry"] = 1700000000000.5
				return p
			}(), 400, "invalid request: Invalid value given for 'expiry': expected integer timestamp (in milliseconds)"},
		} {
			if status, _, raw := n.do(t, c.method, c.p); status != c.status || raw != c.text {
				t.Errorf("%s %v: %d %q, want %d %q", c.method, c.p["namespace"], status, raw, c.status, c.text)
			}
		}
	})
}

// §4.7 expire: set, shorten, extend, arrays, and the signed result.
func TestExpire(t *testing.T) {
	u := sessionSigner(t, 7)
	soon, later := testNow+3600_000, testNow+2*day
	t.Run("set", func(t *testing.T) {
		n := newTestNode(t, 1)
		hs := seedMessages(t, n, u, 0, 2)
		status, body, raw := n.do(t, "expire", u.Expire(hs, soon, rpcclient.ExpireSet))
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		e := n.mine(t, body)
		want := sortedCopy(hs)
		if got := strs(e["updated"]); strings.Join(got, ",") != strings.Join(want, ",") || e["expiry"] != float64(soon) {
			t.Fatalf("entry %v", e)
		}
		if _, ok := e["unchanged"]; ok {
			t.Fatalf("unchanged without shorten/extend: %v", e)
		}
		checkNodeSig(t, n.keys, e["signature"], u.Pubkey()+strconv.FormatInt(soon, 10)+strings.Join(hs, "")+strings.Join(want, ""))
	})
	t.Run("extend reports unchanged", func(t *testing.T) {
		n := newTestNode(t, 1)
		hs := seedMessages(t, n, u, 0, 2) // expiry = timestamp + 1 day
		status, body, raw := n.do(t, "expire", u.Expire(hs, soon, rpcclient.ExpireExtend))
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		e := n.mine(t, body)
		unchanged := e["unchanged"].(map[string]any)
		if len(strs(e["updated"])) != 0 || len(unchanged) != 2 {
			t.Fatalf("extend to an earlier time changed something: %v", e)
		}
		var tail string
		for _, h := range sortedCopy(hs) {
			tail += h + strconv.FormatInt(int64(unchanged[h].(float64)), 10)
		}
		checkNodeSig(t, n.keys, e["signature"], u.Pubkey()+strconv.FormatInt(soon, 10)+strings.Join(hs, "")+tail)
		_, body, _ = n.do(t, "expire", u.Expire(hs, later, rpcclient.ExpireExtend))
		if e = n.mine(t, body); len(strs(e["updated"])) != 2 {
			t.Fatalf("extend to later: %v", e)
		}
	})
	t.Run("per-message expiries", func(t *testing.T) {
		n := newTestNode(t, 1)
		hs := seedMessages(t, n, u, 0, 2)
		exps := []int64{soon, soon + 1000}
		status, body, raw := n.do(t, "expire", u.ExpireEach(hs, exps, rpcclient.ExpireShorten))
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		e := n.mine(t, body)
		got := e["expiry"].([]any)
		if len(got) != 2 {
			t.Fatalf("expiry array %v", e["expiry"])
		}
		exp, _ := n.store.GetExpiries(t.Context(), u.Account, hs)
		if exp[hs[0]] != soon || exp[hs[1]] != soon+1000 {
			t.Fatalf("stored expiries %v", exp)
		}
	})
	t.Run("per-message expiries need hardfork 19.4", func(t *testing.T) {
		n := newTestNode(t, 1)
		n.swarm.snap.Hardfork = [2]int{19, 3}
		hs := seedMessages(t, n, u, 0, 2)
		status, _, raw := n.do(t, "expire", u.ExpireEach(hs, []int64{soon, soon}, rpcclient.ExpireSet))
		if status != 403 {
			t.Fatalf("%d %s", status, raw)
		}
		if status, _, raw := n.do(t, "expire", u.Expire(hs, soon, rpcclient.ExpireSet)); status != 200 {
			t.Fatalf("single expiry on 19.3: %d %s", status, raw)
		}
	})
	t.Run("capped at 30 days", func(t *testing.T) {
		n := newTestNode(t, 1)
		hs := seedMessages(t, n, u, 0, 1)
		_, body, _ := n.do(t, "expire", u.Expire(hs, testNow+60*day, rpcclient.ExpireSet))
		if e := n.mine(t, body); e["expiry"] != float64(testNow+30*day) {
			t.Fatalf("expiry %v, want the 30-day cap", e["expiry"])
		}
	})
	t.Run("errors", func(t *testing.T) {
		n := newTestNode(t, 1)
		hs := seedMessages(t, n, u, 0, 2)
		for _, c := range []struct {
			name   string
			p      map[string]any
			status int
			text   string
		}{
			{"past expiry", u.Expire(hs, testNow-61_000, rpcclient.ExpireSet), 401, "expire: timestamp should be >= current time"},
			{"shorten and extend", func() map[string]any { p := u.Expire(hs, soon, rpcclient.ExpireShorten); p["extend"] = true; return p }(), 400, "invalid request: cannot specify both 'shorten' and 'extend'"},
			{"array of the wrong length", u.ExpireEach(hs, []int64{soon, soon, soon}, rpcclient.ExpireSet), 400, "invalid request: 'expiry' must be a single expiry, or the same length as 'messages'"},
			{"empty expiry array", func() map[string]any { p := u.Expire(hs, soon, rpcclient.ExpireSet); p["expiry"] = []int64{}; return p }(), 400, "invalid request: 'expiry' does not contain any expiration timestamps"},
			{"signed for extend, sent as set", func() map[string]any { p := u.Expire(hs, soon, rpcclient.ExpireExtend); delete(p, "extend"); return p }(), 401, "expire: signature verification failed"},
		} {
			if status, _, raw := n.do(t, "expire", c.p); status != c.status || raw != c.text {
				t.Errorf("%s: %d %q, want %d %q", c.name, status, raw, c.status, c.text)
			}
		}
	})
	t.Run("write-only subaccount may only extend", func(t *testing.T) {
		n := newTestNode(t, 1)
		g := groupSigner(t, 9)
		hs := seedMessages(t, n, g, 11, 1)
		sub := seed32(4)
		tok, sig, _ := g.Token(edPub(sub), rpcclient.FlagWrite)
		sa, _ := g.Subaccount(sub, tok, sig)
		status, _, raw := n.do(t, "expire", sa.Expire(hs, soon, rpcclient.ExpireShorten))
		if status != 400 || raw != "expire: shorten parameter cannot be used with this subaccount token (missing delete access)" {
			t.Fatalf("shorten: %d %s", status, raw)
		}
		// a plain set behaves as extend: the earlier expiry is not applied
		status, body, raw := n.do(t, "expire", sa.Expire(hs, soon, rpcclient.ExpireSet))
		if status != 200 || len(strs(n.mine(t, body)["updated"])) != 0 {
			t.Fatalf("set as write-only subaccount: %d %s", status, raw)
		}
	})
}

// §4.8 get_expiries.
func TestGetExpiries(t *testing.T) {
	n := newTestNode(t, 1)
	u := sessionSigner(t, 7)
	hs := seedMessages(t, n, u, 0, 2)
	missing := storage.MessageHash(u.Account, 0, []byte("absent"))
	status, body, raw := n.do(t, "get_expiries", u.GetExpiries([]string{hs[0], missing}, testNow))
	if status != 200 {
		t.Fatalf("%d %s", status, raw)
	}
	exp := body["expiries"].(map[string]any)
	if len(exp) != 1 || exp[hs[0]] != float64(testNow-2+day) {
		t.Fatalf("expiries %v (found hashes only)", exp)
	}
	if status, _, raw := n.do(t, "get_expiries", u.GetExpiries(hs, testNow-61_000)); status != 406 || raw != "get_expiries timestamp too far from current time" {
		t.Fatalf("old timestamp: %d %s", status, raw)
	}
	p := u.GetExpiries(hs, testNow)
	p["messages"] = hs[:1]
	if status, _, raw := n.do(t, "get_expiries", p); status != 401 || raw != "get_expiries signature verification failed" {
		t.Fatalf("bad signature: %d %s", status, raw)
	}
}

// §4.9/4.10: revoke, unrevoke, revoked_subaccounts; no subaccounts allowed.
func TestRevocation(t *testing.T) {
	n := newTestNode(t, 1)
	g := groupSigner(t, 9)
	sub := seed32(5)
	tok, tsig, _ := g.Token(edPub(sub), rpcclient.FlagRead)
	member, _ := g.Subaccount(sub, tok, tsig)
	read := func() int {
		s, _, _ := n.do(t, "retrieve", member.Retrieve(rpcclient.RetrieveArgs{Namespace: 11, Timestamp: testNow}))
		return s
	}
	if read() != 200 {
		t.Fatal("member cannot read before revocation")
	}
	status, body, raw := n.do(t, "revoke_subaccount", g.RevokeSubaccount([][]byte{tok}, testNow))
	if status != 200 {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	checkNodeSig(t, n.keys, n.mine(t, body)["signature"], g.Pubkey()+strconv.FormatInt(testNow, 10)+string(tok))
	if read() != 401 {
		t.Fatal("revoked member can still read")
	}
	status, body, raw = n.do(t, "revoked_subaccounts", g.RevokedSubaccounts(testNow))
	if status != 200 {
		t.Fatalf("revoked_subaccounts: %d %s", status, raw)
	}
	if l := body["revoked_subaccounts"].([]any); len(l) != 1 || l[0] != base64.StdEncoding.EncodeToString(tok) {
		t.Fatalf("revoked list %v", l)
	}
	// a subaccount may not revoke (its fields are not even read: the
	// signature is checked against the owner key)
	p := g.RevokeSubaccount([][]byte{tok}, testNow)
	p["signature"] = base64.StdEncoding.EncodeToString(signWith(sub, []byte("revoke_subaccount"+strconv.FormatInt(testNow, 10)+string(tok))))
	p["subaccount"] = base64.StdEncoding.EncodeToString(tok)
	p["subaccount_sig"] = base64.StdEncoding.EncodeToString(tsig)
	if status, _, raw := n.do(t, "revoke_subaccount", p); status != 401 {
		t.Fatalf("subaccount revoke: %d %s", status, raw)
	}
	status, body, raw = n.do(t, "unrevoke_subaccount", g.UnrevokeSubaccount([][]byte{tok}, testNow))
	if status != 200 || n.mine(t, body)["count"] != float64(1) {
		t.Fatalf("unrevoke: %d %s", status, raw)
	}
	if read() != 200 {
		t.Fatal("unrevoked member cannot read")
	}
	many := make([][]byte, MaxRevoke+1)
	for i := range many {
		many[i] = append([]byte{3, 1, 0, 0}, edPub(seed32(byte(i)))...)
	}
	if status, _, raw := n.do(t, "revoke_subaccount", g.RevokeSubaccount(many, testNow)); status != 400 || raw != "invalid request: invalid revoke: cannot revoke more than 50 subaccounts at once" {
		t.Fatalf("51 tokens: %d %s", status, raw)
	}
	p = g.RevokeSubaccount([][]byte{tok}, testNow)
	p["revoke"] = []string{"short"}
	if status, _, raw := n.do(t, "revoke_subaccount", p); status != 400 || raw != "invalid request: invalid revoke: expected base64 or hex-encoded subaccount tag" {
		t.Fatalf("bad token: %d %s", status, raw)
	}
	if status, _, raw := n.do(t, "revoke_subaccount", g.RevokeSubaccount([][]byte{tok}, testNow+61_000)); status != 406 || raw != "revoke_subaccount timestamp too far from current time" {
		t.Fatalf("future timestamp: %d %s", status, raw)
	}
}
