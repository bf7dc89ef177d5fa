package rpc

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"runtime/debug"
	"sort"
	"strconv"
	"time"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/netstack/httpbody"
	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
)

// Limits of spec §12.
const (
	MaxMessageData   = 76800            // raw bytes of one message
	MaxBodyBytes     = 10 << 20         // request body
	MaxBatch         = 20               // batch/sequence subrequests
	MaxRevoke        = 50               // tokens per revoke request
	RetrieveMaxSize  = 7_800_000        // bytes of one retrieve answer
	minTTL           = 10 * time.Second // store TTL floor
	maxTTLPublic     = 14 * 24 * time.Hour
	maxTTLPrivate    = 30 * 24 * time.Hour
	storeTolerance   = 10 * time.Second
	sigTolerance     = 60 * time.Second
	sigTolForwarded  = 70 * time.Second
	forwardedTimeout = 5 * time.Second
)

// response is one answer: body is a string (text/plain) or a JSON-able
// value built from map[string]any, []any, []string, []int64, int64, bool,
// string and []byte (binary: base64 in JSON, raw in bt).
type response struct {
	status int
	body   any
}

func text(status int, s string) response { return response{status, s} }

// binaryBody is a binary answer (active_nodes_bin): raw over HTTP, base64
// wherever it has to travel inside JSON (batch bodies, onion responses).
type binaryBody []byte

func badRequest(err error) response {
	var pe parseError
	if errors.As(err, &pe) {
		return text(http.StatusBadRequest, "invalid request: "+pe.Error())
	}
	return text(http.StatusBadRequest, "invalid request: "+err.Error())
}

// call is the context of one request's processing.
type call struct {
	forwarded bool // arrived by sn.storage_cc: no re-forwarding, wider tolerance
	now       time.Time
	// localDone, when set, is called once the local part of the request is
	// done (before waiting for swarm members), so a batch can start its
	// next subrequest: local effects happen in request order, as upstream.
	localDone func()
}

func (c *call) signalLocal() {
	if c.localDone != nil {
		c.localDone()
	}
}

func (c *call) nowMS() int64 { return c.now.UnixMilli() }

// request is a parsed client request.
type request interface {
	run(ctx context.Context, s *Server, c *call) response
}

// recursiveRequest is a request that the entry node forwards to its swarm
// (R in spec §4).
type recursiveRequest interface {
	request
	btParams() map[string]any
}

type parseFunc func(p *params) (request, error)

// methodInfo describes one RPC method.
type methodInfo struct {
	parse     parseFunc
	recursive bool
	meta      bool // batch/sequence/ifelse: not allowed inside batch/sequence
}

var methods map[string]methodInfo

func init() {
	methods = map[string]methodInfo{
		"store":                 {parse: parseStore, recursive: true},
		"retrieve":              {parse: parseRetrieve},
		"delete":                {parse: parseDelete, recursive: true},
		"delete_all":            {parse: parseDeleteAll, recursive: true},
		"delete_before":         {parse: parseDeleteBefore, recursive: true},
		"expire_all":            {parse: parseExpireAll, recursive: true},
		"expire":                {parse: parseExpire, recursive: true},
		"get_expiries":          {parse: parseGetExpiries},
		"revoke_subaccount":     {parse: parseRevoke, recursive: true},
		"unrevoke_subaccount":   {parse: parseUnrevoke, recursive: true},
		"revoked_subaccounts":   {parse: parseRevoked},
		"get_swarm":             {parse: parseGetSwarm},
		"get_snodes_for_pubkey": {parse: parseGetSwarm},
		"info":                  {parse: parseInfo},
		"oxend_request":         {parse: parseOxendRequest},
		"batch":                 {parse: parseBatch(false), meta: true},
		"sequence":              {parse: parseBatch(true), meta: true},
		"ifelse":                {parse: parseIfElse, meta: true},
		"active_nodes_bin":      {parse: parseActiveNodes},
	}
}

// hf is the [hardfork, revision] pair of answers: the network's when the
// registry reports one, else ours.
func (s *Server) hf() []int {
	snap := s.cfg.Swarm.Snapshot()
	if snap.Hardfork != [2]int{} {
		return []int{snap.Hardfork[0], snap.Hardfork[1]}
	}
	return []int{Hardfork[0], Hardfork[1]}
}

func (s *Server) addMisc(m map[string]any, c *call) {
	m["t"] = c.nowMS()
	m["hf"] = s.hf()
}

// parseJSONRequest splits a {"method","params"} body in one decoding pass
// (extra top-level keys such as "jsonrpc" are ignored). Keys match exactly,
// as in the reference's JSON library: encoding/json folds case in struct
// fields, so a body with a top-level key that only folds to "method" or
// "params" ({"Method": …}) takes the exact, slower path.
func parseJSONRequest(body []byte) (string, map[string]json.RawMessage, *response) {
	var top struct {
		Method json.RawMessage            `json:"method"`
		Params map[string]json.RawMessage `json:"params"`
	}
	var paramsType *json.UnmarshalTypeError
	if err := json.Unmarshal(body, &top); err != nil && !(errors.As(err, &paramsType) && paramsType.Field == "params") {
		r := text(http.StatusBadRequest, "invalid json")
		return "", nil, &r
	}
	if paramsType != nil || !topKeysExact(body) {
		// (a type error may come from an earlier duplicate "params": the
		// exact path lets the last one win, as the reference's parser does)
		top.Method, top.Params, paramsType = exactTopKeys(body)
	}
	method, ok := fastString(bytes.TrimSpace(top.Method))
	if !ok && (json.Unmarshal(top.Method, &method) != nil || !bytes.HasPrefix(bytes.TrimSpace(top.Method), []byte(`"`))) {
		r := text(http.StatusBadRequest, "invalid json: no `method` field")
		return "", nil, &r
	}
	if top.Params == nil || paramsType != nil {
		r := text(http.StatusBadRequest, "invalid json: no `params` field")
		return "", nil, &r
	}
	return method, top.Params, nil
}

// exactTopKeys reads "method" and "params" of a valid JSON object by exact
// key (the last one wins, as when the reference parses duplicates).
func exactTopKeys(body []byte) (method json.RawMessage, params map[string]json.RawMessage, typeErr *json.UnmarshalTypeError) {
	var all map[string]json.RawMessage
	if json.Unmarshal(body, &all) != nil {
		return nil, nil, nil
	}
	method = all["method"]
	if raw, ok := all["params"]; ok {
		if err := json.Unmarshal(raw, &params); errors.As(err, &typeErr) {
			params = nil
		}
	}
	return method, params, typeErr
}

// topKeysExact reports whether no top-level key of the valid JSON object
// body folds to "method" or "params" without being spelled so. It only
// skims: strings are skipped with IndexByte, so the cost is small next to
// decoding.
func topKeysExact(b []byte) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return true
	}
	i++
	for {
		i = skipWS(b, i)
		if i >= len(b) || b[i] != '"' {
			return true // '}' (or not reached for valid input)
		}
		end := jsonStringEnd(b, i)
		key := b[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			if json.Unmarshal(b[i:end], &k) != nil {
				return false
			}
			key = []byte(k)
		}
		for _, want := range [...]string{"method", "params"} {
			if string(key) != want && bytes.EqualFold(key, []byte(want)) {
				return false
			}
		}
		i = skipWS(b, end) + 1 // ':'
		i = skipJSONValue(b, skipWS(b, i))
		i = skipWS(b, i)
		if i < len(b) && b[i] == ',' {
			i++
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// jsonStringEnd returns the index just past the string literal at b[i].
func jsonStringEnd(b []byte, i int) int {
	j := i + 1
	for j < len(b) {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return len(b)
		}
		j += k
		bs := 0
		for p := j - 1; p > i && b[p] == '\\'; p-- {
			bs++
		}
		j++
		if bs%2 == 0 {
			return j
		}
	}
	return len(b)
}

// skipJSONValue returns the index just past the value at b[i].
func skipJSONValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return jsonStringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = jsonStringEnd(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}

// process runs one JSON client request body (HTTP and onion paths).
func (s *Server) process(ctx context.Context, body []byte) response {
	if reasons := s.cfg.Swarm.NotReady(); reasons != nil {
		return notReady(reasons)
	}
	method, ps, bad := parseJSONRequest(body)
	if bad != nil {
		return *bad
	}
	info, ok := methods[method]
	if !ok {
		return text(http.StatusBadRequest, "no method "+method)
	}
	req, err := info.parse(&params{j: ps})
	if err != nil {
		s.cfg.Logger.Debug("invalid client request", "method", method, "err", err)
		return badRequest(err)
	}
	if info.recursive || info.meta {
		// A write that has started goes through everywhere even if the
		// client hangs up: half-applied swarm writes are worse.
		ctx = context.WithoutCancel(ctx)
	}
	r := req.run(ctx, s, &call{now: s.cfg.Now()})
	if r.status >= 300 {
		msg, _ := r.body.(string)
		s.cfg.Logger.Debug("client request refused", "method", method, "status", r.status, "reason", msg)
	}
	return r
}

func notReady(reasons []string) response {
	msg := "Service node is not ready: "
	for i, r := range reasons {
		if i > 0 {
			msg += "; "
		}
		msg += r
	}
	return text(http.StatusServiceUnavailable, msg+"\n")
}

// encodeJSON renders a response body as the HTTP/onion answer.
func encodeJSON(r response) (out []byte, isJSON bool) {
	if !isPlain(r) && encodeFast(r.body, func(b []byte) { out = bytes.Clone(b) }) {
		return out, true
	}
	return encodeSlow(r)
}

// withEncoded hands fn the rendered answer and whether it is JSON; out may
// be a pooled buffer, valid only during fn.
func withEncoded(r response, fn func(out []byte, isJSON bool)) {
	if !isPlain(r) && encodeFast(r.body, func(b []byte) { fn(b, true) }) {
		return
	}
	fn(encodeSlow(r))
}

// isPlain reports a text or binary answer, which is not JSON-encoded.
func isPlain(r response) bool {
	switch r.body.(type) {
	case string, binaryBody:
		return true
	}
	return false
}

// encodeSlow renders what encodeFast does not: text, binary (base64), and
// JSON bodies of types appendJSON does not know, each into a fresh slice.
func encodeSlow(r response) ([]byte, bool) {
	if s, isText := r.body.(string); isText {
		return []byte(s), false
	}
	if b, isBinary := r.body.(binaryBody); isBinary {
		return []byte(base64.StdEncoding.EncodeToString(b)), false
	}
	// No HTML escaping: the answer is data for Session clients, and '<',
	// '>' and '&' should reach them as the reference writes them.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r.body); err != nil {
		return []byte("request failed"), false
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), true
}

// wrongSwarm is the 421 answer: the swarm that owns the account (§6.2).
func (s *Server) wrongSwarm(c *call, id uint64, members []registry.Node) response {
	body := swarmJSON(id, members)
	s.addMisc(body, c)
	return response{http.StatusMisdirectedRequest, body}
}

// ours checks that the account maps to our swarm; otherwise it returns
// the 421 answer.
func (s *Server) ours(c *call, a storage.Account) *response {
	id, members, ours := s.cfg.Swarm.Lookup(a)
	if ours {
		return nil
	}
	r := s.wrongSwarm(c, id, members)
	return &r
}

func swarmJSON(id uint64, members []registry.Node) map[string]any {
	snodes := []any{}
	for _, n := range members {
		if !n.IP.IsValid() || n.HTTPSPort == 0 {
			continue // no contact info (newer reference servers omit these)
		}
		snodes = append(snodes, map[string]any{
			"address":        identityAddress(n),
			"ip":             n.IP.Unmap().String(),
			"port":           strconv.Itoa(int(n.HTTPSPort)),
			"port_https":     int(n.HTTPSPort),
			"port_omq":       int(n.OMQPort),
			"port_quic":      int(n.OMQPort),
			"pubkey_ed25519": n.Ed25519Hex(),
			"pubkey_legacy":  hexOf(n.Legacy[:]),
			"pubkey_x25519":  hexOf(n.X25519[:]),
		})
	}
	return map[string]any{"snodes": snodes, "swarm": strconv.FormatUint(id, 16)}
}

// fanout runs a recursive request (spec §6.4): the entry node sends the bt
// params to every other swarm member while it processes locally, then
// answers {"swarm": {ed25519 hex: entry}} plus top-level fields; a
// forwarded request just answers its own entry.
func (s *Server) fanout(ctx context.Context, c *call, method string, req recursiveRequest, top map[string]any, local func() map[string]any) response {
	if c.forwarded {
		mine := local()
		if mine["failed"] == true {
			return text(http.StatusInternalServerError, "query failure")
		}
		return response{http.StatusOK, mine}
	}
	btBody, err := bencode.Marshal(req.btParams())
	if err != nil {
		s.cfg.Logger.Error("encode forwarded request", "method", method, "err", err)
		return text(http.StatusInternalServerError, "request failed")
	}
	repl := make(chan []MemberReply, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				s.cfg.Logger.Error("swarm replicate panicked", "method", method, "panic", p, "stack", string(debug.Stack()))
				repl <- nil
			}
		}()
		// A client hanging up must not cut the swarm short: members would
		// disagree about what happened.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), forwardedTimeout+2*time.Second)
		defer cancel()
		repl <- s.cfg.Swarm.Replicate(rctx, method, btBody)
	}()
	mine := local()
	c.signalLocal()
	replies := <-repl

	self := s.cfg.Keys.Ed25519Hex()
	swarm := map[string]any{self: mine}
	for _, r := range replies {
		if k := r.Node.Ed25519Hex(); k != self {
			swarm[k] = memberEntry(r)
		}
	}
	if top == nil {
		top = map[string]any{}
	}
	top["swarm"] = swarm
	s.addMisc(top, c)
	status := http.StatusInternalServerError
	for _, e := range swarm {
		if m, ok := e.(map[string]any); ok && m["failed"] == nil {
			status = http.StatusOK
			break
		}
	}
	return response{status, top}
}

// memberEntry converts one member's answer into its "swarm" entry.
func memberEntry(r MemberReply) map[string]any {
	if r.Err != nil {
		// Spec §6.4 tells a timeout ("timeout": true) from other failures.
		// An unreachable member counts as a timeout: the reference's OxenMQ
		// keeps dialling a dead peer until the request times out, so its
		// clients only ever see "timeout" for one, and the swarm retries
		// both alike. Any other local failure is a bare "failed".
		if errors.Is(r.Err, peer.ErrTimeout) || errors.Is(r.Err, peer.ErrUnreachable) {
			return map[string]any{"failed": true, "timeout": true}
		}
		return map[string]any{"failed": true}
	}
	if r.Reply.Status != http.StatusOK {
		return map[string]any{"failed": true, "code": r.Reply.Status, "reason": string(r.Reply.Body)}
	}
	v, err := bencode.Unmarshal(r.Reply.Body)
	if err != nil {
		return map[string]any{"failed": true, "bad_peer_response": true}
	}
	d, ok := v.(map[string]any)
	if !ok {
		return map[string]any{"failed": true, "bad_peer_response": true}
	}
	return btToJSON(d).(map[string]any)
}

// btToJSON turns a decoded bt value into the JSON shape: strings become
// text, except "signature" which stays binary (base64 in JSON); integers
// stay integers (so "already" shows as 1, as the reference does).
func btToJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if b, isBytes := e.([]byte); isBytes && k == "signature" {
				out[k] = b
				continue
			}
			out[k] = btToJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = btToJSON(e)
		}
		return out
	case []byte:
		return string(x)
	default:
		return x
	}
}

// failedEntry is a local storage failure in a swarm entry.
func (s *Server) failedEntry(method string, err error) map[string]any {
	if errors.Is(err, storage.ErrFull) {
		s.cfg.Logger.Warn("message store is full", "method", method)
	} else {
		s.cfg.Logger.Error("message store failed", "method", method, "err", err)
	}
	return map[string]any{"failed": true, "query_failure": true}
}

// ServeHTTP serves POST /storage_rpc/v1 (spec §1.1).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Logger.Error("storage rpc panicked", "panic", p, "stack", string(debug.Stack()))
			writeResponse(w, text(http.StatusInternalServerError, "request failed"))
		}
	}()
	if r.ContentLength > MaxBodyBytes {
		writeResponse(w, text(http.StatusRequestEntityTooLarge, "request body too large"))
		return
	}
	if reasons := s.cfg.Swarm.NotReady(); reasons != nil {
		writeResponse(w, notReady(reasons))
		return
	}
	ip, ok := clientIPv4(r.RemoteAddr)
	if !ok {
		writeResponse(w, text(http.StatusBadRequest, "invalid request: client address must be IPv4"))
		return
	}
	if !s.limiter.allow(ip, s.cfg.Now()) {
		writeResponse(w, text(http.StatusTooManyRequests, "too many requests"))
		return
	}
	if r.Header.Get("X-Loki-Long-Poll") != "" {
		writeResponse(w, text(http.StatusGone, "long polling is no longer supported, please update your client"))
		return
	}
	body, err := readBody(r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeResponse(w, text(http.StatusRequestEntityTooLarge, "request body too large"))
			return
		}
		writeResponse(w, text(http.StatusBadRequest, "invalid request: could not read body"))
		return
	}
	writeResponse(w, s.process(r.Context(), body))
}

// readBody reads the request into a buffer sized from Content-Length;
// MaxBytesReader reports a body over the limit.
func readBody(r *http.Request) ([]byte, error) {
	return httpbody.Read(http.MaxBytesReader(nil, r.Body, MaxBodyBytes), r.ContentLength, MaxBodyBytes+1)
}

func writeResponse(w http.ResponseWriter, r response) {
	if b, isBinary := r.body.(binaryBody); isBinary {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(r.status)
		w.Write(b)
		return
	}
	withEncoded(r, func(out []byte, isJSON bool) {
		if isJSON {
			w.Header().Set("Content-Type", "application/json")
		} else {
			w.Header().Set("Content-Type", "text/plain")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(r.status)
		w.Write(out)
	})
}

// Invoke runs one JSON client request (`{"method","params"}`) as the onion
// final destination does: no rate limit, no HTTP. It returns the status, the
// body, and whether the body is JSON (else plain text).
func (s *Server) Invoke(ctx context.Context, body []byte) (status int, out []byte, isJSON bool) {
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Logger.Error("storage rpc panicked", "panic", p, "stack", string(debug.Stack()))
			status, out, isJSON = http.StatusInternalServerError, []byte("request failed"), false
		}
	}()
	if len(body) > MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, []byte("request body too large"), false
	}
	r := s.process(ctx, body)
	out, isJSON = encodeJSON(r)
	return r.status, out, isJSON
}

// HandleStorageCC is the receiving side of sn.storage_cc (spec §6.4): body is
// the bt list [method, bt params]; the reply body is the bt result dict, or
// a failure status with its reason.
func (s *Server) HandleStorageCC(ctx context.Context, from ed25519.PublicKey, body []byte) (rep peer.Reply) {
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Logger.Error("storage_cc panicked", "panic", p, "stack", string(debug.Stack()))
			rep = peer.Reply{Status: http.StatusInternalServerError, Body: []byte("request failed")}
		}
	}()
	return s.storageCC(ctx, body)
}

func (s *Server) storageCC(ctx context.Context, body []byte) peer.Reply {
	fail := func(status int, msg string) peer.Reply {
		return peer.Reply{Status: status, Body: []byte(msg)}
	}
	v, err := bencode.Unmarshal(body)
	if err != nil {
		return fail(http.StatusBadRequest, "invalid request: storage_cc body is not bencoded: "+err.Error())
	}
	list, ok := v.([]any)
	if !ok || len(list) != 2 {
		return fail(http.StatusBadRequest, "invalid request: storage_cc body must be [method, params]")
	}
	mb, ok := list[0].([]byte)
	if !ok {
		return fail(http.StatusBadRequest, "invalid request: storage_cc method must be a string")
	}
	method := string(mb)
	// The params arrive as the bt dict itself or as a string holding it
	// (OMQ carries it as a separate message part).
	pv := list[1]
	if raw, isStr := pv.([]byte); isStr {
		if pv, err = bencode.Unmarshal(raw); err != nil {
			return fail(http.StatusBadRequest, "invalid request: storage_cc params are not bencoded: "+err.Error())
		}
	}
	d, ok := pv.(map[string]any)
	if !ok {
		return fail(http.StatusBadRequest, "invalid request: storage_cc params must be a dict")
	}
	info, known := methods[method]
	if !known {
		return fail(http.StatusBadRequest, "no method "+method)
	}
	if !info.recursive {
		return fail(http.StatusBadRequest, "invalid request: received invalid forwarded non-forwardable request")
	}
	req, err := info.parse(&params{bt: bencode.Dict(d)})
	if err != nil {
		r := badRequest(err)
		return fail(r.status, r.body.(string))
	}
	r := req.run(context.WithoutCancel(ctx), s, &call{forwarded: true, now: s.cfg.Now()})
	if r.status != http.StatusOK {
		out, _ := encodeJSON(r)
		return fail(r.status, string(out))
	}
	out, err := bencode.Marshal(r.body)
	if err != nil {
		s.cfg.Logger.Error("encode storage_cc reply", "method", method, "err", err)
		return fail(http.StatusInternalServerError, "request failed")
	}
	return peer.Reply{Status: http.StatusOK, Body: out}
}

// Methods are the client RPC method names (spec §4), sorted: the OMQ
// listener serves each as storage.<method>.
func Methods() []string {
	out := make([]string, 0, len(methods))
	for m := range methods {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
