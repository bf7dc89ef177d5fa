package rpc

import (
	"context"
	"encoding/base64"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// §6.2 swarm JSON, from get_swarm and from a 421.
func TestGetSwarmAndWrongSwarm(t *testing.T) {
	n := newTestNode(t, 1)
	u := sessionSigner(t, 7)
	other := nodeFor(seedKeys(t, 2), 30000)
	hidden := nodeFor(seedKeys(t, 3), 0) // no contact info: omitted
	hidden.IP = netip.Addr{}
	n.swarm.members = []registry.Node{other, hidden}
	n.swarm.id = 0xabc
	n.swarm.ours = false
	want := `{"hf":[19,6],"snodes":[{"address":"` + identityAddress(other) + `","ip":"127.0.0.1","port":"30000","port_https":30000,"port_omq":30001,"port_quic":30001,"pubkey_ed25519":"` + other.Ed25519Hex() + `","pubkey_legacy":"` + other.Ed25519Hex() + `","pubkey_x25519":"` + hexOf(other.X25519[:]) + `"}],"swarm":"abc","t":1700000000000}`
	for _, m := range []string{"get_swarm", "get_snodes_for_pubkey"} {
		status, _, raw := n.do(t, m, rpcclient.GetSwarm(u.Pubkey()))
		if status != 200 || raw != want {
			t.Fatalf("%s: %d\n%s\nwant\n%s", m, status, raw, want)
		}
	}
	if !strings.HasSuffix(identityAddress(other), ".snode") {
		t.Fatalf("address %s", identityAddress(other))
	}
	// every account method answers 421 with the owning swarm
	for _, c := range []struct {
		method string
		p      map[string]any
	}{
		{"store", rpcclient.StoreUnsigned(u.Pubkey(), rpcclient.StoreArgs{Data: []byte("x"), Timestamp: testNow, TTL: day})},
		{"retrieve", u.Retrieve(rpcclient.RetrieveArgs{Timestamp: testNow})},
		{"delete_all", u.DeleteAll(nsAll, testNow)},
		{"get_expiries", u.GetExpiries([]string{"x"}, testNow)},
	} {
		status, _, raw := n.do(t, c.method, c.p)
		if status != 421 || raw != want {
			t.Fatalf("%s to a foreign swarm: %d %s", c.method, status, raw)
		}
	}
	if n.swarm.forwarded != nil {
		t.Fatal("a misdirected request was replicated")
	}
	// no swarm known
	n.swarm.members = nil
	if _, _, raw := n.do(t, "get_swarm", map[string]any{"pubKey": u.Pubkey()}); !strings.Contains(raw, `"snodes":[],"swarm":"ffffffffffffffff"`) {
		t.Fatalf("no swarm: %s", raw)
	}
}

// §4.13 oxend_request answered from the registry snapshot.
func TestOxendRequest(t *testing.T) {
	n := newTestNode(t, 1)
	status, body, raw := n.do(t, "oxend_request", rpcclient.OxendRequest("get_service_nodes", map[string]any{
		"fields": map[string]any{"pubkey_ed25519": true, "public_ip": true, "storage_lmq_port": true, "storage_server_version": true, "swarm_id": true},
	}))
	if status != 200 {
		t.Fatalf("%d %s", status, raw)
	}
	res := body["result"].(map[string]any)
	states := res["service_node_states"].([]any)
	want := `[{"pubkey_ed25519":"` + n.keys.Ed25519Hex() + `","public_ip":"127.0.0.1","storage_lmq_port":20003,"storage_server_version":[2,11,3],"swarm_id":4660}]`
	if jsonOf(t, states) != want || res["height"] != float64(1000) || res["hardfork"] != float64(19) || res["unchanged"] != false {
		t.Fatalf("result %s", raw)
	}
	// all fields with the [new] list selector; unchanged when polled
	_, body, _ = n.do(t, "oxend_request", rpcclient.OxendRequest("get_service_nodes", map[string]any{"fields": []string{"service_node_pubkey", "storage_port"}}))
	if got := jsonOf(t, body["result"].(map[string]any)["service_node_states"]); got != `[{"service_node_pubkey":"`+n.keys.Ed25519Hex()+`","storage_port":20002}]` {
		t.Fatalf("list selector: %s", got)
	}
	_, body, _ = n.do(t, "oxend_request", rpcclient.OxendRequest("get_service_nodes", map[string]any{"poll_block_hash": "abcd"}))
	if r := body["result"].(map[string]any); r["unchanged"] != true || r["service_node_states"] != nil {
		t.Fatalf("poll with the current hash: %v", r)
	}
	if status, _, raw := n.do(t, "oxend_request", rpcclient.OxendRequest("ons_resolve", map[string]any{"name": "x"})); status != 502 || !strings.Contains(raw, "no oxend") {
		t.Fatalf("ons_resolve: %d %s", status, raw)
	}
	if status, _, raw := n.do(t, "oxend_request", rpcclient.OxendRequest("get_info", nil)); status != 400 || raw != "invalid request: Invalid oxend endpoint 'get_info'" {
		t.Fatalf("other endpoint: %d %s", status, raw)
	}
}

// §4.15 batch, sequence, ifelse.
func TestBatchSequenceIfElse(t *testing.T) {
	n := newTestNode(t, 1)
	u := sessionSigner(t, 7)
	store := func(d string) rpcclient.Request {
		return rpcclient.Request{Method: "store", Params: rpcclient.StoreUnsigned(u.Pubkey(), rpcclient.StoreArgs{Data: []byte(d), Timestamp: testNow, TTL: day})}
	}
	bad := rpcclient.Request{Method: "store", Params: rpcclient.StoreUnsigned(u.Pubkey(), rpcclient.StoreArgs{Data: []byte("x"), Timestamp: testNow, TTL: 1})}
	status, body, raw := n.do(t, "batch", rpcclient.Batch(store("a"), bad, store("b")))
	if status != 200 {
		t.Fatalf("batch: %d %s", status, raw)
	}
	res := body["results"].([]any)
	codes := []float64{res[0].(map[string]any)["code"].(float64), res[1].(map[string]any)["code"].(float64), res[2].(map[string]any)["code"].(float64)}
	if jsonOf(t, codes) != "[200,403,200]" || res[1].(map[string]any)["body"] != "Provided expiry/TTL is not valid." {
		t.Fatalf("batch results %s", raw)
	}
	if _, ok := res[0].(map[string]any)["body"].(map[string]any)["swarm"]; !ok {
		t.Fatalf("batch store body is not the JSON result: %s", raw)
	}
	// sequence stops after the first failure
	_, body, raw = n.do(t, "sequence", rpcclient.Sequence(store("c"), bad, store("d")))
	if res = body["results"].([]any); len(res) != 2 {
		t.Fatalf("sequence ran past a failure: %s", raw)
	}
	// retrieve in a batch sees the stores
	_, body, _ = n.do(t, "batch", rpcclient.Batch(rpcclient.Request{Method: "retrieve", Params: u.Retrieve(rpcclient.RetrieveArgs{Timestamp: testNow})}))
	msgs := body["results"].([]any)[0].(map[string]any)["body"].(map[string]any)["messages"].([]any)
	if len(msgs) != 3 || msgs[0].(map[string]any)["data"] != base64.StdEncoding.EncodeToString([]byte("a")) {
		t.Fatalf("retrieve in batch: %v", msgs)
	}

	many := make([]rpcclient.Request, MaxBatch+1)
	for i := range many {
		many[i] = rpcclient.Request{Method: "info", Params: rpcclient.Params{}}
	}
	for _, c := range []struct {
		name   string
		method string
		p      any
		text   string
	}{
		{"21 subrequests", "batch", rpcclient.Batch(many...), "invalid request: Invalid batch request: subrequest limit exceeded"},
		{"empty", "batch", rpcclient.Batch(), `invalid request: Invalid batch request: no valid "requests" field`},
		{"nested batch", "batch", rpcclient.Batch(rpcclient.Request{Method: "batch", Params: rpcclient.Batch(store("x"))}), "invalid request: Invalid batch subrequest: subrequests may not contain meta-requests"},
		{"nested ifelse", "sequence", rpcclient.Sequence(rpcclient.Request{Method: "ifelse", Params: rpcclient.Params{}}), "invalid request: Invalid batch subrequest: subrequests may not contain meta-requests"},
		{"unknown method", "batch", rpcclient.Batch(rpcclient.Request{Method: "nope", Params: rpcclient.Params{}}), `invalid request: Invalid batch subrequest: invalid method "nope"`},
		{"entry not an object", "batch", map[string]any{"requests": []any{1}}, "invalid request: Invalid batch request: requests must be objects"},
		{"entry without params", "batch", map[string]any{"requests": []any{map[string]any{"method": "info"}}}, "invalid request: Invalid batch subrequest: subrequests must have method/params keys"},
		{"bad subrequest", "batch", rpcclient.Batch(rpcclient.Request{Method: "store", Params: rpcclient.Params{}}), "invalid request: Required field 'timestamp' missing"},
		{"ifelse without condition", "ifelse", map[string]any{"if": map[string]any{}, "then": rpcclient.Request{Method: "info", Params: rpcclient.Params{}}}, `invalid request: Invalid ifelse request: must specify at least one "if" condition`},
		{"ifelse without branches", "ifelse", map[string]any{"if": map[string]any{"hf_at_least": []int{19}}}, `invalid request: Invalid ifelse request: at least one of "then"/"else" required`},
		{"ifelse without if", "ifelse", map[string]any{"then": rpcclient.Request{Method: "info", Params: rpcclient.Params{}}}, `invalid request: Invalid ifelse request: no valid "if" field`},
	} {
		if status, _, raw := n.do(t, c.method, c.p); status != 400 || raw != c.text {
			t.Errorf("%s: %d %q, want 400 %q", c.name, status, raw, c.text)
		}
	}

	info := rpcclient.Request{Method: "info", Params: rpcclient.Params{}}
	swarm := rpcclient.Request{Method: "get_swarm", Params: rpcclient.GetSwarm(u.Pubkey())}
	for _, c := range []struct {
		cond map[string]any
		want bool
	}{
		{map[string]any{"hf_at_least": []int{19, 6}}, true},
		{map[string]any{"hf_at_least": []int{19, 7}}, false},
		{map[string]any{"hf_before": []int{20}}, true},
		{map[string]any{"v_at_least": []int{2, 11}}, true},
		{map[string]any{"v_before": []int{2, 11, 3}}, false},
		{map[string]any{"height_at_least": 1000, "height_before": 1001}, true},
		{map[string]any{"height_at_least": 1000, "hf_before": []int{19, 6}}, false},
	} {
		status, body, raw := n.do(t, "ifelse", map[string]any{"if": c.cond, "then": info, "else": swarm})
		if status != 200 || body["condition"] != c.want || body["height"] != float64(1000) || jsonOf(t, body["v"]) != "[2,11,3]" {
			t.Fatalf("ifelse %v: %d %s", c.cond, status, raw)
		}
		res := body["result"].(map[string]any)["body"].(map[string]any)
		if _, isInfo := res["version"]; isInfo != c.want {
			t.Fatalf("ifelse %v ran the wrong branch: %s", c.cond, raw)
		}
	}
	// a branch may itself be a batch; a missing branch gives no result
	status, body, raw = n.do(t, "ifelse", map[string]any{"if": map[string]any{"hf_at_least": []int{1}}, "then": rpcclient.Request{Method: "batch", Params: rpcclient.Batch(info)}})
	if status != 200 || len(body["result"].(map[string]any)["body"].(map[string]any)["results"].([]any)) != 1 {
		t.Fatalf("ifelse → batch: %d %s", status, raw)
	}
	_, body, _ = n.do(t, "ifelse", map[string]any{"if": map[string]any{"hf_at_least": []int{99}}, "then": info})
	if _, ok := body["result"]; ok || body["condition"] != false {
		t.Fatalf("false condition without else: %v", body)
	}
	_ = context.Background
}

// Batch subrequests run their local parts in order but replicate
// concurrently: every store is at the swarm before any member answers.
func TestBatchReplicatesConcurrently(t *testing.T) {
	n := newTestNode(t, 1)
	u := sessionSigner(t, 7)
	const subs = 3
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	n.swarm.replicate = func(ctx context.Context, method string, bt []byte) []MemberReply {
		mu.Lock()
		arrived++
		if arrived == subs {
			close(all)
		}
		mu.Unlock()
		<-all // would never return if the batch waited for each in turn
		return nil
	}
	var reqs []rpcclient.Request
	for i := 0; i < subs; i++ {
		reqs = append(reqs, rpcclient.Request{Method: "store", Params: rpcclient.StoreUnsigned(u.Pubkey(), rpcclient.StoreArgs{Data: []byte{byte(i)}, Timestamp: testNow, TTL: day})})
	}
	status, _, raw := n.do(t, "batch", rpcclient.Batch(reqs...))
	if status != 200 {
		t.Fatalf("%d %s", status, raw)
	}
	msgs, _, _ := n.store.Retrieve(context.Background(), u.Account, 0, "", 0, 0)
	for i, m := range msgs {
		if m.Data[0] != byte(i) {
			t.Fatalf("stores landed out of request order: %v", msgs)
		}
	}
}

// §4.14 active_nodes_bin: 51 bytes per node, raw over HTTPS, base64 inside
// JSON (batch) and for the onion final destination (Invoke).
func TestActiveNodesBin(t *testing.T) {
	n := newTestNode(t, 1)
	other := nodeFor(seedKeys(t, 2), 0x1234)
	other.SwarmID = 0x0102030405060708
	other.Version = [3]uint16{2, 300, 1}
	noContact := nodeFor(seedKeys(t, 3), 0)
	noContact.IP = netip.Addr{}
	noContact.OMQPort = 0
	n.swarm.snap.Nodes = []registry.Node{other, noContact}
	ts, c := tlsServer(t, n)
	resp, raw := post(t, c, ts.URL, rpcclient.Body("active_nodes_bin", nil), nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/octet-stream" || len(raw) != 2*51 {
		t.Fatalf("%d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(raw))
	}
	want := string(other.Ed25519[:]) + "\x01\x02\x03\x04\x05\x06\x07\x08" + "\x7f\x00\x00\x01" + "\x12\x34" + "\x12\x35" + "\x02\xff\x01"
	if raw[:51] != want {
		t.Fatalf("record %x\nwant   %x", raw[:51], want)
	}
	if rec := raw[51:]; rec[40:44] != "\x00\x00\x00\x00" || rec[44:48] != "\x00\x00\x00\x00" {
		t.Fatalf("unknown contact info not zero: %x", rec)
	}
	status, out, isJSON := n.srv.Invoke(context.Background(), rpcclient.Body("active_nodes_bin", nil))
	if status != 200 || isJSON || string(out) != base64.StdEncoding.EncodeToString([]byte(raw)) {
		t.Fatalf("Invoke: %d %v %s", status, isJSON, out)
	}
	_, body, _ := n.do(t, "batch", rpcclient.Batch(rpcclient.Request{Method: "active_nodes_bin", Params: rpcclient.Params{}}))
	if got := body["results"].([]any)[0].(map[string]any)["body"]; got != string(out) {
		t.Fatalf("batch body %v", got)
	}
}
