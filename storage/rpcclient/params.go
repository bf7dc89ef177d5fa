package rpcclient

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/snodebox/snodebox/storage"
)

// Params is one method's JSON params object.
type Params map[string]any

// Request is one {"method", "params"} pair (also a batch/sequence entry).
type Request struct {
	Method string `json:"method"`
	Params Params `json:"params"`
}

// Body is the JSON request body for method and params, the same bytes
// POST /storage_rpc/v1 carries and an onion final destination unwraps.
func Body(method string, params any) []byte {
	if params == nil {
		params = Params{}
	}
	b, err := json.Marshal(struct {
		Method string `json:"method"`
		Params any    `json:"params"`
	}{method, params})
	if err != nil {
		// Params built here are always encodable; a caller's unencodable
		// value still yields a request the node rejects with a clear 400.
		return []byte(`{"method":` + strconv.Quote(method) + `}`)
	}
	return b
}

func nsParam(p Params, ns storage.Namespace) {
	if ns != 0 {
		p["namespace"] = int(ns)
	}
}

// nsFilterSig is the namespace in delete_all/delete_before/expire_all signed
// strings: "all", "" for 0, decimal otherwise.
func nsFilterSig(p Params, f storage.NSFilter) string {
	if f.All {
		p["namespace"] = "all"
		return "all"
	}
	nsParam(p, f.NS)
	return f.NS.SigString()
}

// StoreArgs describes a store. Exactly one of TTL and Expiry is used (TTL
// when non-zero).
type StoreArgs struct {
	Namespace storage.Namespace
	Data      []byte
	Timestamp int64 // ms
	TTL       int64 // ms, relative to Timestamp
	Expiry    int64 // ms, absolute
}

func (a StoreArgs) params(pubkey string) Params {
	p := Params{
		"pubkey":    pubkey,
		"timestamp": a.Timestamp,
		"data":      base64.StdEncoding.EncodeToString(a.Data),
	}
	if a.TTL != 0 || a.Expiry == 0 {
		p["ttl"] = a.TTL
	} else {
		p["expiry"] = a.Expiry
	}
	nsParam(p, a.Namespace)
	return p
}

// StoreUnsigned stores without auth (public inbox namespaces such as 0).
func StoreUnsigned(pubkey string, a StoreArgs) Params { return a.params(pubkey) }

// Store is a signed store: "store" || ns || timestamp.
func (s *Signer) Store(a StoreArgs) Params {
	p := a.params(s.Pubkey())
	s.authFields(p, "store"+a.Namespace.SigString()+strconv.FormatInt(a.Timestamp, 10))
	return p
}

// RetrieveArgs describes a retrieve; zero limits are left to the node.
type RetrieveArgs struct {
	Namespace storage.Namespace
	LastHash  string
	MaxCount  int
	MaxSize   int
	Timestamp int64 // ms, signature time
}

func (a RetrieveArgs) params(pubkey string) Params {
	p := Params{"pubkey": pubkey}
	nsParam(p, a.Namespace)
	if a.LastHash != "" {
		p["last_hash"] = a.LastHash
	}
	if a.MaxCount != 0 {
		p["max_count"] = a.MaxCount
	}
	if a.MaxSize != 0 {
		p["max_size"] = a.MaxSize
	}
	return p
}

// RetrieveUnsigned reads a no-auth namespace (public outbox, −10).
func RetrieveUnsigned(pubkey string, a RetrieveArgs) Params { return a.params(pubkey) }

// Retrieve is a signed retrieve: "retrieve" || ns || timestamp.
func (s *Signer) Retrieve(a RetrieveArgs) Params {
	p := a.params(s.Pubkey())
	p["timestamp"] = a.Timestamp
	s.authFields(p, "retrieve"+a.Namespace.SigString()+strconv.FormatInt(a.Timestamp, 10))
	return p
}

// Delete deletes messages by hash: "delete" || hash1 || hash2 ….
func (s *Signer) Delete(hashes []string, required bool) Params {
	p := Params{"messages": hashes}
	if required {
		p["required"] = true
	}
	s.authFields(p, "delete"+strings.Join(hashes, ""))
	return p
}

// DeleteAll deletes every message of a namespace (or all):
// "delete_all" || ns || timestamp.
func (s *Signer) DeleteAll(ns storage.NSFilter, timestamp int64) Params {
	p := Params{"timestamp": timestamp}
	sig := "delete_all" + nsFilterSig(p, ns) + strconv.FormatInt(timestamp, 10)
	s.authFields(p, sig)
	return p
}

// DeleteBefore deletes messages with timestamp <= before:
// "delete_before" || ns || before.
func (s *Signer) DeleteBefore(ns storage.NSFilter, before int64) Params {
	p := Params{"before": before}
	sig := "delete_before" + nsFilterSig(p, ns) + strconv.FormatInt(before, 10)
	s.authFields(p, sig)
	return p
}

// ExpireAll shortens every expiry of a namespace (or all) to expiry:
// "expire_all" || ns || expiry.
func (s *Signer) ExpireAll(ns storage.NSFilter, expiry int64) Params {
	p := Params{"expiry": expiry}
	sig := "expire_all" + nsFilterSig(p, ns) + strconv.FormatInt(expiry, 10)
	s.authFields(p, sig)
	return p
}

// ExpireMode selects the expire variant.
type ExpireMode string

const (
	ExpireSet     ExpireMode = ""
	ExpireShorten ExpireMode = "shorten"
	ExpireExtend  ExpireMode = "extend"
)

// Expire sets one expiry on every hash:
// "expire" || mode || expiry || hash1 || ….
func (s *Signer) Expire(hashes []string, expiry int64, mode ExpireMode) Params {
	p := Params{"messages": hashes, "expiry": expiry}
	if mode != ExpireSet {
		p[string(mode)] = true
	}
	s.authFields(p, "expire"+string(mode)+strconv.FormatInt(expiry, 10)+strings.Join(hashes, ""))
	return p
}

// ExpireEach sets expiries[i] on hashes[i]; the signed string concatenates
// the expiries in order.
func (s *Signer) ExpireEach(hashes []string, expiries []int64, mode ExpireMode) Params {
	p := Params{"messages": hashes, "expiry": expiries}
	if mode != ExpireSet {
		p[string(mode)] = true
	}
	var b strings.Builder
	b.WriteString("expire")
	b.WriteString(string(mode))
	for _, e := range expiries {
		b.WriteString(strconv.FormatInt(e, 10))
	}
	b.WriteString(strings.Join(hashes, ""))
	s.authFields(p, b.String())
	return p
}

// GetExpiries asks for the expiries of hashes:
// "get_expiries" || timestamp || hash1 || ….
func (s *Signer) GetExpiries(hashes []string, timestamp int64) Params {
	p := Params{"messages": hashes, "timestamp": timestamp}
	s.authFields(p, "get_expiries"+strconv.FormatInt(timestamp, 10)+strings.Join(hashes, ""))
	return p
}

func (s *Signer) tokenList(method, key string, tokens [][]byte, timestamp int64) Params {
	enc := make([]string, len(tokens))
	msg := []byte(method + strconv.FormatInt(timestamp, 10))
	for i, t := range tokens {
		enc[i] = base64.StdEncoding.EncodeToString(t)
		msg = append(msg, t...)
	}
	p := Params{key: enc, "timestamp": timestamp}
	s.authFields(p, string(msg))
	return p
}

// RevokeSubaccount revokes tokens:
// "revoke_subaccount" || timestamp || token1 || … (raw 36-byte tokens).
func (s *Signer) RevokeSubaccount(tokens [][]byte, timestamp int64) Params {
	return s.tokenList("revoke_subaccount", "revoke", tokens, timestamp)
}

// UnrevokeSubaccount lifts revocations:
// "unrevoke_subaccount" || timestamp || token1 || ….
func (s *Signer) UnrevokeSubaccount(tokens [][]byte, timestamp int64) Params {
	return s.tokenList("unrevoke_subaccount", "unrevoke", tokens, timestamp)
}

// RevokedSubaccounts lists revoked tokens: "revoked_subaccounts" || timestamp.
func (s *Signer) RevokedSubaccounts(timestamp int64) Params {
	p := Params{"timestamp": timestamp}
	s.authFields(p, "revoked_subaccounts"+strconv.FormatInt(timestamp, 10))
	return p
}

// GetSwarm asks which nodes hold pubkey.
func GetSwarm(pubkey string) Params { return Params{"pubkey": pubkey} }

// Info asks for the node's version and time.
func Info() Params { return Params{} }

// OxendRequest asks the node to answer an oxend RPC (get_service_nodes).
func OxendRequest(endpoint string, params map[string]any) Params {
	p := Params{"endpoint": endpoint}
	if params != nil {
		p["params"] = params
	}
	return p
}

// Batch runs up to 20 requests independently.
func Batch(reqs ...Request) Params { return Params{"requests": reqs} }

// Sequence runs up to 20 requests in order, stopping at the first failure.
func Sequence(reqs ...Request) Params { return Params{"requests": reqs} }
