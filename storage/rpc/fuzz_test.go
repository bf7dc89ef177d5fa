package rpc

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

var knownStatus = map[int]bool{200: true, 400: true, 401: true, 403: true, 404: true, 406: true, 421: true, 500: true, 502: true}

// FuzzRequest feeds arbitrary bodies to the JSON request path (without the
// last-resort recover, so a panic fails) and arbitrary storage_cc bodies
// to the bt path. Every answer must carry a spec status and a non-empty
// body; JSON answers must be valid JSON.
//
//	go test ./storage/rpc/ -run '^$' -fuzz FuzzRequest -fuzztime 30s
func FuzzRequest(f *testing.F) {
	u, _ := rpcclient.NewSession(seed32(7))
	g, _ := rpcclient.NewGroup(seed32(9))
	hash := storage.MessageHash(u.Account, 0, []byte("x"))
	for _, seed := range [][]byte{
		rpcclient.Body("info", nil),
		rpcclient.Body("store", rpcclient.StoreUnsigned(u.Pubkey(), rpcclient.StoreArgs{Data: []byte("x"), Timestamp: testNow, TTL: day})),
		rpcclient.Body("store", u.Store(rpcclient.StoreArgs{Namespace: 5, Data: []byte("x"), Timestamp: testNow, TTL: day})),
		rpcclient.Body("retrieve", u.Retrieve(rpcclient.RetrieveArgs{Namespace: 5, Timestamp: testNow, LastHash: hash, MaxSize: -2})),
		rpcclient.Body("delete", u.Delete([]string{hash}, true)),
		rpcclient.Body("delete_all", g.DeleteAll(storage.NSFilter{All: true}, testNow)),
		rpcclient.Body("expire", u.ExpireEach([]string{hash}, []int64{testNow + 1000}, rpcclient.ExpireShorten)),
		rpcclient.Body("revoke_subaccount", g.RevokeSubaccount([][]byte{make([]byte, 36)}, testNow)),
		rpcclient.Body("batch", rpcclient.Batch(rpcclient.Request{Method: "info", Params: rpcclient.Params{}})),
		rpcclient.Body("ifelse", map[string]any{"if": map[string]any{"hf_at_least": []int{19}}, "then": rpcclient.Request{Method: "get_swarm", Params: rpcclient.GetSwarm(g.Pubkey())}}),
		rpcclient.Body("oxend_request", rpcclient.OxendRequest("get_service_nodes", map[string]any{"fields": []string{"swarm_id"}})),
		[]byte(`{"method":"store","params":{"pubkey":"05","timestamp":"x","ttl":-1,"data":null}}`),
		storageCC("store", bencode.MustMarshal((&storeReq{auth: auth{account: u.Account}, timestamp: testNow, expiry: testNow + day, data: []byte("f")}).btParams())),
		storageCC("expire", bencode.MustMarshal(map[string]any{"pubkey": u.Account.Bytes(), "signature": make([]byte, 64), "expiry": []any{int64(1)}, "messages": []any{[]byte(hash)}})),
	} {
		f.Add(seed)
	}
	n := newTestNode(f, 1)
	f.Fuzz(func(t *testing.T, body []byte) {
		r := n.srv.process(context.Background(), body)
		if !knownStatus[r.status] {
			t.Fatalf("status %d for %q", r.status, body)
		}
		out, isJSON := encodeJSON(r)
		if len(out) == 0 {
			t.Fatalf("empty body for %q", body)
		}
		if isJSON && !json.Valid(out) {
			t.Fatalf("invalid JSON answer %q", out)
		}
		rep := n.srv.storageCC(context.Background(), body)
		if !knownStatus[rep.Status] || len(rep.Body) == 0 {
			t.Fatalf("storage_cc %d %q for %q", rep.Status, rep.Body, body)
		}
		if rep.Status == 200 {
			if _, err := bencode.Unmarshal(rep.Body); err != nil {
				t.Fatalf("storage_cc reply is not bencode: %v", err)
			}
		}
	})
}

// FuzzFastString: the shortcut for plain string literals agrees with
// encoding/json whenever it takes a literal.
func FuzzFastString(f *testing.F) {
	for _, s := range []string{`"abc"`, `"a\"b"`, `"\u00e9"`, `""`, `"é"`, `"a\\"`, "\"\x01\"", `"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, lit []byte) {
		got, ok := fastString(lit)
		if !ok {
			return
		}
		var want string
		if err := json.Unmarshal(lit, &want); err != nil || want != got {
			t.Fatalf("fastString(%q) = %q; encoding/json: %q, %v", lit, got, want, err)
		}
	})
}
