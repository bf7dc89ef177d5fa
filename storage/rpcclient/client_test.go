package rpcclient

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

func seed(b byte) []byte {
	s := make([]byte, 32)
	for i := range s {
		s[i] = b
	}
	return s
}

func verifies(t *testing.T, pub ed25519.PublicKey, sigB64 any, msg string) {
	t.Helper()
	sig, err := base64.StdEncoding.DecodeString(sigB64.(string))
	if err != nil || !ed25519.Verify(pub, []byte(msg), sig) {
		t.Fatalf("signature does not verify over %q", msg)
	}
}

// Spec §3.1 step 3: the owner signs the 36 token bytes; the subaccount key
// signs the request; the token rides along in b64.
func TestSubaccountSigner(t *testing.T) {
	g, err := NewGroup(seed(1))
	if err != nil {
		t.Fatal(err)
	}
	subPub := ed25519.NewKeyFromSeed(seed(2)).Public().(ed25519.PublicKey)
	tok, tsig, err := g.Token(subPub, FlagRead|FlagWrite)
	if err != nil {
		t.Fatal(err)
	}
	if tok[0] != 0x03 || tok[1] != 3 || tok[2] != 0 || tok[3] != 0 || string(tok[4:]) != string(subPub) {
		t.Fatalf("token layout %x", tok)
	}
	ownerPub := ed25519.PublicKey(g.Account.Key[:])
	if !ed25519.Verify(ownerPub, tok, tsig) {
		t.Fatal("owner signature over the token does not verify")
	}
	sa, err := g.Subaccount(seed(2), tok, tsig)
	if err != nil {
		t.Fatal(err)
	}
	p := sa.Retrieve(RetrieveArgs{Namespace: 11, Timestamp: 1700000000000})
	if p["pubkey"] != g.Pubkey() || p["subaccount"] != base64.StdEncoding.EncodeToString(tok) {
		t.Fatalf("params %v", p)
	}
	verifies(t, subPub, p["signature"], "retrieve111700000000000")
	if _, _, err := sa.Token(subPub, FlagRead); err == nil {
		t.Fatal("a subaccount issued a token")
	}
}

func TestSignedStrings(t *testing.T) {
	g, _ := NewGroup(seed(1))
	pub := ed25519.PublicKey(g.Account.Key[:])
	tok := make([]byte, 36)
	tok[0] = 3
	cases := []struct {
		p   Params
		msg string
	}{
		{g.ExpireEach([]string{"h1", "h2"}, []int64{1700000000001, 1700000000002}, ExpireShorten), "expireshorten17000000000011700000000002h1h2"},
		{g.Expire([]string{"h1"}, 1700000000001, ExpireSet), "expire1700000000001h1"},
		{g.Delete([]string{"h1", "h2"}, true), "deleteh1h2"},
		{g.RevokeSubaccount([][]byte{tok}, 1700000000000), "revoke_subaccount1700000000000" + string(tok)},
		{g.UnrevokeSubaccount([][]byte{tok}, 1700000000000), "unrevoke_subaccount1700000000000" + string(tok)},
		{g.RevokedSubaccounts(1700000000000), "revoked_subaccounts1700000000000"},
		{g.Store(StoreArgs{Namespace: -11, Data: []byte("x"), Timestamp: 1700000000000, TTL: 60000}), "store-111700000000000"},
	}
	for _, c := range cases {
		verifies(t, pub, c.p["signature"], c.msg)
		if _, ok := c.p["pubkey_ed25519"]; ok {
			t.Fatalf("03 account sends pubkey_ed25519: %v", c.p)
		}
	}
}

// Do posts the JSON body to /storage_rpc/v1 over TLS without checking the
// node's self-signed certificate, and hands back status and body.
func TestDo(t *testing.T) {
	var got struct {
		Method string         `json:"method"`
		Params map[string]any `json:"params"`
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != Path || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "wrong request "+r.Method+" "+r.URL.Path, 404)
			return
		}
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &got)
		w.WriteHeader(421)
		w.Write([]byte(`{"snodes":[]}`))
	}))
	defer srv.Close()
	status, body, err := New().Do(context.Background(), srv.URL+"/", "get_swarm", GetSwarm("05ab"))
	if err != nil || status != 421 || string(body) != `{"snodes":[]}` {
		t.Fatalf("%d %s %v", status, body, err)
	}
	if got.Method != "get_swarm" || got.Params["pubkey"] != "05ab" {
		t.Fatalf("server saw %+v", got)
	}
	if _, _, err := Do(context.Background(), "https://127.0.0.1:1", "info", nil); err == nil {
		t.Fatal("no error for an unreachable node")
	}
	_ = strconv.Itoa
}
