package rpc

import (
	"context"
	"encoding/hex"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
)

func hexOf(b []byte) string                  { return hex.EncodeToString(b) }
func identityAddress(n registry.Node) string { return identity.SnodeAddress(n.Legacy[:]) }
func itoa(n int64) []byte                    { return []byte(strconv.FormatInt(n, 10)) }
func outside(t, now int64, tol time.Duration) bool {
	d := tol.Milliseconds()
	return t < now-d || t > now+d
}

// nsSig is the namespace in delete_all/delete_before/expire_all strings.
func nsSig(f storage.NSFilter) []byte {
	if f.All {
		return []byte("all")
	}
	return []byte(f.NS.SigString())
}

func nsBT(d map[string]any, f storage.NSFilter) {
	if f.All {
		d["namespace"] = "all"
	} else {
		d["namespace"] = int64(f.NS)
	}
}

// sign makes this node's signature over the concatenated parts.
func (s *Server) sign(parts ...[]byte) []byte {
	var msg []byte
	for _, p := range parts {
		msg = append(msg, p...)
	}
	return s.cfg.Keys.Sign(msg)
}

func strParts(ss []string) []byte {
	var b []byte
	for _, s := range ss {
		b = append(b, s...)
	}
	return b
}

// ---- store (§4.1) ----

type storeReq struct {
	auth
	signed    bool
	ns        storage.Namespace
	timestamp int64
	expiry    int64
	sigTS     int64
	data      []byte
}

func parseStore(p *params) (request, error) {
	r := &storeReq{}
	var ts int64
	var hasTS bool
	var err error
	if p.isBT() {
		ts, hasTS, err = p.timestamp("timestamp")
	} else {
		ts, hasTS, err = p.stringified("timestamp", false)
	}
	if err != nil {
		return nil, err
	}
	ttl, hasTTL, err := p.stringified("ttl", true)
	if err != nil {
		return nil, err
	}
	expiry, hasExpiry, err := p.timestamp("expiry")
	if err != nil {
		return nil, err
	}
	if !hasTS {
		return nil, perr("Required field 'timestamp' missing")
	}
	if hasExpiry && hasTTL {
		return nil, perr("Cannot specify both 'expiry' and 'ttl'")
	}
	if !hasExpiry && !hasTTL {
		return nil, perr("Required field 'expiry' or 'ttl' missing")
	}
	r.timestamp = ts
	if hasTTL {
		const ttlCap = int64(1) << 50 // far beyond any valid TTL; keeps the sum in range
		if ttl > ttlCap {
			ttl = ttlCap
		}
		expiry = ts + ttl
	}
	r.expiry = expiry
	ns, _, err := p.namespace("namespace", false)
	if err != nil {
		return nil, err
	}
	r.ns = ns.NS
	if p.has("signature") {
		if err := r.loadSigned(p, true, true); err != nil {
			return nil, err
		}
		r.signed = true
		sigTS, has, err := p.timestamp("sig_timestamp")
		if err != nil {
			return nil, err
		}
		if !has {
			sigTS = ts
		}
		r.sigTS = sigTS
	} else if err := r.loadPubkey(p, true); err != nil {
		return nil, err
	}
	data, has, err := p.data("data")
	if err != nil {
		return nil, err
	}
	if !has {
		return nil, perr("Required field 'data' missing")
	}
	r.data = data
	return r, nil
}

func (r *storeReq) btParams() map[string]any {
	d := map[string]any{"timestamp": r.timestamp, "expiry": r.expiry, "data": r.data}
	r.btFields(d)
	if r.signed {
		d["sig_timestamp"] = r.sigTS
	}
	if r.ns != 0 {
		d["namespace"] = int64(r.ns)
	}
	return d
}

func (r *storeReq) run(ctx context.Context, s *Server, c *call) response {
	if wrong := s.ours(c, r.account); wrong != nil {
		return *wrong
	}
	now := c.nowMS()
	maxTTL := maxTTLPrivate
	if r.ns.PublicInbox() {
		maxTTL = maxTTLPublic
	}
	if ttl := r.expiry - r.timestamp; ttl < minTTL.Milliseconds() || ttl > maxTTL.Milliseconds() {
		return text(http.StatusForbidden, "Provided expiry/TTL is not valid.")
	}
	if r.timestamp > now+storeTolerance.Milliseconds() || r.expiry < now-storeTolerance.Milliseconds() {
		return text(http.StatusNotAcceptable, "Timestamp error: check your clock")
	}
	if !r.ns.PublicInbox() {
		if !r.signed {
			return text(http.StatusUnauthorized, "store: signature required to store to namespace "+strconv.Itoa(int(r.ns)))
		}
		if outside(r.sigTS, now, sigTolerance) {
			return text(http.StatusNotAcceptable, "store signature timestamp too far from current time")
		}
		need := accessWrite
		if r.ns.PublicOutbox() {
			// a store to a public outbox replaces what is there: it deletes
			need |= accessDelete
		}
		if !s.verify(ctx, &r.auth, need, false, []byte("store"), []byte(r.ns.SigString()), itoa(r.sigTS)) {
			return text(http.StatusUnauthorized, "store signature verification failed")
		}
	}
	hash := storage.MessageHash(r.account, r.ns, r.data)
	top := map[string]any{}
	return s.fanout(ctx, c, "store", r, top, func() map[string]any {
		already, expiry, err := s.cfg.Store.Store(ctx, storage.Message{
			Hash: hash, Owner: r.account, Namespace: r.ns,
			Timestamp: r.timestamp, Expiry: r.expiry, Data: r.data,
		})
		if err != nil {
			return s.failedEntry("store", err)
		}
		e := map[string]any{"hash": hash, "signature": s.sign([]byte(hash)), "expiry": expiry}
		if already {
			e["already"] = true
		}
		if !c.forwarded {
			top["hash"] = hash // backwards compatibility
			e["t"] = now       // deprecated, entry node only
		}
		return e
	})
}

// ---- retrieve (§4.2) ----

type retrieveReq struct {
	auth
	checkSig  bool
	timestamp int64
	ns        storage.Namespace
	lastHash  string
	maxCount  int64
	maxSize   int64
}

func parseRetrieve(p *params) (request, error) {
	r := &retrieveReq{}
	if err := r.loadPubkey(p, true); err != nil {
		return nil, err
	}
	ns, _, err := p.namespace("namespace", false)
	if err != nil {
		return nil, err
	}
	r.ns = ns.NS
	if p.has("pubkey_ed25519") || p.has("signature") || p.has("timestamp") {
		if err := r.loadSignature(p); err != nil {
			return nil, err
		}
		if err := r.loadSubaccount(p); err != nil {
			return nil, err
		}
		ts, has, err := p.timestamp("timestamp")
		if err != nil {
			return nil, err
		}
		if !has {
			return nil, perr("Required field 'timestamp' missing")
		}
		r.timestamp, r.checkSig = ts, true
	}
	lh, hasLH, err := p.str("last_hash")
	if err != nil {
		return nil, err
	}
	alt, hasAlt, err := p.str("lastHash")
	if err != nil {
		return nil, err
	}
	if hasLH && hasAlt {
		return nil, perr("Cannot specify both 'last_hash' and 'lastHash'")
	}
	if hasAlt {
		lh = alt
	}
	if lh != "" {
		if len(lh) != 43 {
			return nil, perr("Invalid last_hash: expected base64 (43 chars)")
		}
		if !storage.ValidHash(lh) {
			return nil, perr("Invalid last_hash: not base64")
		}
	}
	r.lastHash = lh
	if r.maxCount, _, err = p.integer("max_count"); err != nil {
		return nil, err
	}
	if r.maxSize, _, err = p.integer("max_size"); err != nil {
		return nil, err
	}
	// [new] reverse_direction: its semantics are not traced (spec §14) and
	// no client we know sends it, so it is type-checked and ignored: the
	// answer is the oldest-first page every server version gives without it.
	if _, _, err := p.boolean("reverse_direction"); err != nil {
		return nil, err
	}
	return r, nil
}

// retrieveLimits applies spec §4.2: 0 is unset; neither → 1/5 of the max;
// −k → max/k; positive sizes capped at the max.
func retrieveLimits(maxCount, maxSize int64) (int, int64) {
	if maxCount < 0 {
		maxCount = 0
	}
	if maxCount == 0 && maxSize == 0 {
		maxSize = -5
	}
	switch {
	case maxSize < 0:
		maxSize = RetrieveMaxSize / -maxSize
	case maxSize == 0 || maxSize > RetrieveMaxSize:
		maxSize = RetrieveMaxSize
	}
	if maxCount > 1<<30 {
		maxCount = 1 << 30
	}
	return int(maxCount), maxSize
}

func (r *retrieveReq) run(ctx context.Context, s *Server, c *call) response {
	if wrong := s.ours(c, r.account); wrong != nil {
		return *wrong
	}
	now := c.nowMS()
	if !r.ns.NoAuthRetrieve() && !r.checkSig {
		return text(http.StatusUnauthorized, "retrieve: request signature required")
	}
	if r.checkSig {
		if outside(r.timestamp, now, sigTolerance) {
			return text(http.StatusNotAcceptable, "retrieve timestamp too far from current time")
		}
		if !s.verify(ctx, &r.auth, accessRead, r.ns.Unrevocable(), []byte("retrieve"), []byte(r.ns.SigString()), itoa(r.timestamp)) {
			return text(http.StatusUnauthorized, "retrieve signature verification failed")
		}
	}
	count, size := retrieveLimits(r.maxCount, r.maxSize)
	msgs, more, err := s.cfg.Store.Retrieve(ctx, r.account, r.ns, r.lastHash, count, size)
	if err != nil {
		s.cfg.Logger.Error("retrieve failed", "err", err)
		return text(http.StatusInternalServerError, "Internal Server Error. Could not retrieve messages for "+obfuscate(r.account))
	}
	body := map[string]any{"messages": retrievedMessages(msgs), "more": more}
	s.addMisc(body, c)
	return response{http.StatusOK, body}
}

func obfuscate(a storage.Account) string {
	h := a.Hex()
	return h[:4] + "…" + h[len(h)-2:]
}

// ---- delete (§4.3) ----

type deleteReq struct {
	auth
	messages []string
	required bool
}

func loadHashes(p *params, validate bool) ([]string, error) {
	msgs, has, err := p.strList("messages")
	if err != nil {
		return nil, err
	}
	if !has {
		return nil, perr("Required field 'messages' missing")
	}
	if len(msgs) == 0 {
		return nil, perr("messages does not contain any message hashes")
	}
	if validate {
		for _, m := range msgs {
			if !storage.ValidHash(m) {
				return nil, perr("invalid message hash: %s", m)
			}
		}
	}
	return msgs, nil
}

func parseDelete(p *params) (request, error) {
	r := &deleteReq{}
	if err := r.loadSigned(p, false, true); err != nil {
		return nil, err
	}
	var err error
	if r.messages, err = loadHashes(p, true); err != nil {
		return nil, err
	}
	if r.required, _, err = p.boolean("required"); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *deleteReq) btParams() map[string]any {
	d := map[string]any{"messages": r.messages}
	r.btFields(d)
	return d
}

func (r *deleteReq) run(ctx context.Context, s *Server, c *call) response {
	if wrong := s.ours(c, r.account); wrong != nil {
		return *wrong
	}
	if !s.verify(ctx, &r.auth, accessDelete, false, []byte("delete"), strParts(r.messages)) {
		return text(http.StatusUnauthorized, "delete_msgs signature verification failed")
	}
	res := s.fanout(ctx, c, "delete", r, nil, func() map[string]any {
		deleted, err := s.cfg.Store.Delete(ctx, r.account, r.messages)
		if err != nil {
			return s.failedEntry("delete", err)
		}
		if deleted == nil {
			deleted = []string{}
		}
		sort.Strings(deleted)
		sig := s.sign([]byte(r.account.Hex()), strParts(r.messages), strParts(deleted))
		return map[string]any{"deleted": deleted, "signature": sig}
	})
	if r.required && !c.forwarded && res.status == http.StatusOK && !anyDeleted(res.body) {
		res.status = http.StatusNotFound
	}
	return res
}

// anyDeleted reports whether some swarm member deleted something.
func anyDeleted(body any) bool {
	top, _ := body.(map[string]any)
	swarm, _ := top["swarm"].(map[string]any)
	for _, e := range swarm {
		m, _ := e.(map[string]any)
		switch d := m["deleted"].(type) {
		case []string:
			if len(d) > 0 {
				return true
			}
		case []any:
			if len(d) > 0 {
				return true
			}
		}
	}
	return false
}

// nsEntry builds the "deleted"/"updated" entry of the namespace-wide
// methods: a sorted list for one namespace, or {"<ns>": [...]} for all,
// signed over sigPrefix and every hash in one global sort.
func (s *Server) nsEntry(key string, res map[storage.Namespace][]string, all bool, sigPrefix ...[]byte) map[string]any {
	type nh struct {
		ns   storage.Namespace
		hash string
	}
	var affected []nh
	for ns, hs := range res {
		for _, h := range hs {
			affected = append(affected, nh{ns, h})
		}
	}
	sort.Slice(affected, func(i, j int) bool { return affected[i].hash < affected[j].hash })
	hashes := make([]string, len(affected))
	for i, a := range affected {
		hashes[i] = a.hash
	}
	sig := s.sign(append(sigPrefix, strParts(hashes))...)
	e := map[string]any{"signature": sig}
	if all {
		byNS := map[string]any{}
		for _, a := range affected {
			k := strconv.Itoa(int(a.ns))
			l, _ := byNS[k].([]string)
			byNS[k] = append(l, a.hash)
		}
		e[key] = byNS
	} else {
		e[key] = hashes
	}
	return e
}

// nsAuth is the shared shape of delete_all, delete_before, expire_all.
type nsAuth struct {
	auth
	ns storage.NSFilter
}

func (n *nsAuth) load(p *params) error {
	if err := n.loadSigned(p, false, true); err != nil {
		return err
	}
	ns, _, err := p.namespace("namespace", true)
	n.ns = ns
	return err
}

func requireTimestamp(p *params, key string) (int64, error) {
	v, has, err := p.timestamp(key)
	if err != nil {
		return 0, err
	}
	if !has {
		return 0, perr("Required field '%s' missing", key)
	}
	return v, nil
}

// ---- delete_all (§4.4) ----

type deleteAllReq struct {
	nsAuth
	timestamp int64
}

func parseDeleteAll(p *params) (request, error) {
	r := &deleteAllReq{}
	if err := r.load(p); err != nil {
		return nil, err
	}
	var err error
	r.timestamp, err = requireTimestamp(p, "timestamp")
	return r, err
}

func (r *deleteAllReq) btParams() map[string]any {
	d := map[string]any{"timestamp": r.timestamp}
	r.btFields(d)
	nsBT(d, r.ns)
	return d
}

func (r *deleteAllReq) run(ctx context.Context, s *Server, c *call) response {
	if wrong := s.ours(c, r.account); wrong != nil {
		return *wrong
	}
	tol := sigTolerance
	if c.forwarded {
		tol = sigTolForwarded
	}
	if outside(r.timestamp, c.nowMS(), tol) {
		return text(http.StatusNotAcceptable, "delete_all timestamp too far from current time")
	}
	if !s.verify(ctx, &r.auth, accessDelete, false, []byte("delete_all"), nsSig(r.ns), itoa(r.timestamp)) {
		return text(http.StatusUnauthorized, "delete_all signature verification failed")
	}
	return s.fanout(ctx, c, "delete_all", r, nil, func() map[string]any {
		res, err := s.cfg.Store.DeleteAll(ctx, r.account, r.ns)
		if err != nil {
			return s.failedEntry("delete_all", err)
		}
		return s.nsEntry("deleted", res, r.ns.All, []byte(r.account.Hex()), itoa(r.timestamp))
	})
}

// ---- delete_before (§4.5) ----

type deleteBeforeReq struct {
	nsAuth
	before int64
}

func parseDeleteBefore(p *params) (request, error) {
	r := &deleteBeforeReq{}
	if err := r.load(p); err != nil {
		return nil, err
	}
	var err error
	r.before, err = requireTimestamp(p, "before")
	return r, err
}

func (r *deleteBeforeReq) btParams() map[string]any {
	d := map[string]any{"before": r.before}
	r.btFields(d)
	nsBT(d, r.ns)
	return d
}

func (r *deleteBeforeReq) run(ctx context.Context, s *Server, c *call) response {
	if wrong := s.ours(c, r.account); wrong != nil {
		return *wrong
	}
	if r.before > c.nowMS()+time.Minute.Milliseconds() {
		return text(http.StatusUnauthorized, "delete_before timestamp too far in the future")
	}
	if !s.verify(ctx, &r.auth, accessDelete, false, []byte("delete_before"), nsSig(r.ns), itoa(r.before)) {
		return text(http.StatusUnauthorized, "delete_before signature verification failed")
	}
	return s.fanout(ctx, c, "delete_before", r, nil, func() map[string]any {
		res, err := s.cfg.Store.DeleteBefore(ctx, r.account, r.ns, r.before)
		if err != nil {
			return s.failedEntry("delete_before", err)
		}
		return s.nsEntry("deleted", res, r.ns.All, []byte(r.account.Hex()), itoa(r.before))
	})
}

// ---- expire_all (§4.6) ----

type expireAllReq struct {
	nsAuth
	expiry int64
}

func parseExpireAll(p *params) (request, error) {
	r := &expireAllReq{}
	if err := r.load(p); err != nil {
		return nil, err
	}
	var err error
	r.expiry, err = requireTimestamp(p, "expiry")
	return r, err
}

func (r *expireAllReq) btParams() map[string]any {
	d := map[string]any{"expiry": r.expiry}
	r.btFields(d)
	nsBT(d, r.ns)
	return d
}

func (r *expireAllReq) run(ctx context.Context, s *Server, c *call) response {
	if wrong := s.ours(c, r.account); wrong != nil {
		return *wrong
	}
	tol := sigTolerance
	if c.forwarded {
		tol = sigTolForwarded
	}
	if r.expiry < c.nowMS()-tol.Milliseconds() {
		return text(http.StatusNotAcceptable, "expire_all timestamp should be >= current time")
	}
	if !s.verify(ctx, &r.auth, accessDelete, false, []byte("expire_all"), nsSig(r.ns), itoa(r.expiry)) {
		return text(http.StatusUnauthorized, "expire_all signature verification failed")
	}
	return s.fanout(ctx, c, "expire_all", r, nil, func() map[string]any {
		res, err := s.cfg.Store.ExpireAll(ctx, r.account, r.ns, r.expiry)
		if err != nil {
			return s.failedEntry("expire_all", err)
		}
		return s.nsEntry("updated", res, r.ns.All, []byte(r.account.Hex()), itoa(r.expiry))
	})
}

// ---- expire (§4.7) ----

type expireReq struct {
	auth
	messages []string
	expiry   []int64 // one, or one per message
	shorten  bool
	extend   bool
}

func parseExpire(p *params) (request, error) {
	r := &expireReq{}
	if err := r.loadSigned(p, false, true); err != nil {
		return nil, err
	}
	exp, has, err := p.timestampList("expiry")
	if err != nil {
		return nil, err
	}
	if !has {
		return nil, perr("Required field 'expiry' missing")
	}
	if len(exp) == 0 {
		return nil, perr("'expiry' does not contain any expiration timestamps")
	}
	r.expiry = exp
	if r.shorten, _, err = p.boolean("shorten"); err != nil {
		return nil, err
	}
	if r.extend, _, err = p.boolean("extend"); err != nil {
		return nil, err
	}
	if r.shorten && r.extend {
		return nil, perr("cannot specify both 'shorten' and 'extend'")
	}
	if r.messages, err = loadHashes(p, true); err != nil {
		return nil, err
	}
	if len(r.expiry) > 1 && len(r.expiry) != len(r.messages) {
		return nil, perr("'expiry' must be a single expiry, or the same length as 'messages'")
	}
	return r, nil
}

func (r *expireReq) btParams() map[string]any {
	d := map[string]any{"messages": r.messages}
	if len(r.expiry) == 1 {
		d["expiry"] = r.expiry[0]
	} else {
		d["expiry"] = r.expiry
	}
	if r.shorten {
		d["shorten"] = int64(1)
	}
	if r.extend {
		d["extend"] = int64(1)
	}
	r.btFields(d)
	return d
}

func (r *expireReq) modeString() string {
	switch {
	case r.shorten:
		return "shorten"
	case r.extend:
		return "extend"
	}
	return ""
}

func (r *expireReq) run(ctx context.Context, s *Server, c *call) response {
	if wrong := s.ours(c, r.account); wrong != nil {
		return *wrong
	}
	now := c.nowMS()
	capAt := now + maxTTLPrivate.Milliseconds()
	applied := make([]int64, len(r.expiry))
	var sigExp []byte
	for i, e := range r.expiry {
		if e < now-time.Minute.Milliseconds() {
			return text(http.StatusUnauthorized, "expire: timestamp should be >= current time")
		}
		applied[i] = min(e, capAt)
		sigExp = append(sigExp, itoa(e)...)
	}
	if hf := s.hf(); len(r.expiry) > 1 && (hf[0] < 19 || (hf[0] == 19 && hf[1] < 4)) {
		return text(http.StatusForbidden, "expire: multiple expiries are not supported before hardfork 19.4")
	}
	if !s.verify(ctx, &r.auth, accessWrite, false, []byte("expire"), []byte(r.modeString()), sigExp, strParts(r.messages)) {
		return text(http.StatusUnauthorized, "expire: signature verification failed")
	}
	mode := storage.ExpirySet
	switch {
	case r.shorten:
		mode = storage.ExpiryShorten
	case r.extend:
		// The [new] rule that extend skips changes under 1 % of the
		// message's lifetime (spec §4.7) is not applied: it is the 2.8
		// behaviour, it only moves small extensions from "updated" to
		// "unchanged", and it would need the stored timestamp in
		// storage.Store's UpdateExpiry contract.
		mode = storage.ExpiryExtend
	}
	if r.token != nil && r.token[1]&accessDelete == 0 {
		// Shortening to "very soon" is as good as deleting, so a subaccount
		// without delete may only extend.
		if r.shorten {
			return text(http.StatusBadRequest, "expire: shorten parameter cannot be used with this subaccount token (missing delete access)")
		}
		mode = storage.ExpiryExtend
	}
	return s.fanout(ctx, c, "expire", r, nil, func() map[string]any {
		per := applied
		if len(applied) == 1 && len(r.messages) > 1 {
			per = make([]int64, len(r.messages))
			for i := range per {
				per[i] = applied[0]
			}
		}
		updates, err := s.cfg.Store.UpdateExpiry(ctx, r.account, r.messages, per, mode)
		if err != nil {
			return s.failedEntry("expire", err)
		}
		updated := []string{}
		var updatedExp []int64
		unchanged := map[string]any{}
		var unchangedHashes []string
		for _, u := range updates { // sorted by hash
			// A plain set touches every message it names (as an SQL UPDATE
			// does), even when the value does not move.
			if u.Changed || mode == storage.ExpirySet {
				updated = append(updated, u.Hash)
				updatedExp = append(updatedExp, u.Expiry)
			} else if r.shorten || r.extend {
				unchanged[u.Hash] = u.Expiry
				unchangedHashes = append(unchangedHashes, u.Hash)
			}
		}
		e := map[string]any{"updated": updated}
		var expParts []byte
		if len(r.expiry) > 1 {
			if updatedExp == nil {
				updatedExp = []int64{}
			}
			for _, x := range updatedExp {
				expParts = append(expParts, itoa(x)...)
			}
			e["expiry"] = updatedExp
		} else {
			expParts = itoa(applied[0])
			e["expiry"] = applied[0]
		}
		var unchangedParts []byte
		sort.Strings(unchangedHashes)
		for _, h := range unchangedHashes {
			unchangedParts = append(unchangedParts, h...)
			unchangedParts = append(unchangedParts, itoa(unchanged[h].(int64))...)
		}
		if r.shorten || r.extend {
			e["unchanged"] = unchanged
		}
		e["signature"] = s.sign([]byte(r.account.Hex()), expParts, strParts(r.messages), strParts(updated), unchangedParts)
		return e
	})
}

// ---- get_expiries (§4.8) ----

type getExpiriesReq struct {
	auth
	messages  []string
	timestamp int64
}

func parseGetExpiries(p *params) (request, error) {
	r := &getExpiriesReq{}
	if err := r.loadSigned(p, false, true); err != nil {
		return nil, err
	}
	var err error
	if r.timestamp, err = requireTimestamp(p, "timestamp"); err != nil {
		return nil, err
	}
	if r.messages, err = loadHashes(p, false); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *getExpiriesReq) run(ctx context.Context, s *Server, c *call) response {
	if wrong := s.ours(c, r.account); wrong != nil {
		return *wrong
	}
	if outside(r.timestamp, c.nowMS(), sigTolerance) {
		return text(http.StatusNotAcceptable, "get_expiries timestamp too far from current time")
	}
	if !s.verify(ctx, &r.auth, accessRead, false, []byte("get_expiries"), itoa(r.timestamp), strParts(r.messages)) {
		return text(http.StatusUnauthorized, "get_expiries signature verification failed")
	}
	exp, err := s.cfg.Store.GetExpiries(ctx, r.account, r.messages)
	if err != nil {
		s.cfg.Logger.Error("get_expiries failed", "err", err)
		return text(http.StatusInternalServerError, "request failed")
	}
	out := make(map[string]any, len(exp))
	for h, e := range exp {
		out[h] = e
	}
	return response{http.StatusOK, map[string]any{"expiries": out}}
}

// ---- revoke_subaccount / unrevoke_subaccount (§4.9) ----

type revokeReq struct {
	auth
	unrevoke  bool
	tokens    [][]byte
	timestamp int64
}

func (r *revokeReq) name() string {
	if r.unrevoke {
		return "unrevoke_subaccount"
	}
	return "revoke_subaccount"
}

func (r *revokeReq) key() string {
	if r.unrevoke {
		return "unrevoke"
	}
	return "revoke"
}

func parseRevokeCommon(p *params, unrevoke bool) (request, error) {
	r := &revokeReq{unrevoke: unrevoke}
	if err := r.loadSigned(p, false, false); err != nil {
		return nil, err
	}
	key := r.key()
	list, has, err := p.strList(key)
	if err != nil {
		return nil, err
	}
	if !has {
		return nil, perr("Required field '%s' missing", key)
	}
	if !unrevoke && len(list) > MaxRevoke {
		return nil, perr("invalid revoke: cannot revoke more than %d subaccounts at once", MaxRevoke)
	}
	for _, t := range list {
		tok, ok := decodeToken(t, p.isBT())
		if !ok {
			if p.isBT() {
				return nil, perr("invalid %s subaccount: invalid subaccount tag length", key)
			}
			return nil, perr("invalid %s: expected base64 or hex-encoded subaccount tag", key)
		}
		r.tokens = append(r.tokens, tok)
	}
	if r.timestamp, err = requireTimestamp(p, "timestamp"); err != nil {
		return nil, err
	}
	return r, nil
}

func parseRevoke(p *params) (request, error)   { return parseRevokeCommon(p, false) }
func parseUnrevoke(p *params) (request, error) { return parseRevokeCommon(p, true) }

func (r *revokeReq) btParams() map[string]any {
	d := map[string]any{"timestamp": r.timestamp, r.key(): r.tokens}
	r.btFields(d)
	return d
}

func (r *revokeReq) run(ctx context.Context, s *Server, c *call) response {
	if wrong := s.ours(c, r.account); wrong != nil {
		return *wrong
	}
	name := r.name()
	if outside(r.timestamp, c.nowMS(), sigTolerance) {
		return text(http.StatusNotAcceptable, name+" timestamp too far from current time")
	}
	var toks []byte
	for _, t := range r.tokens {
		toks = append(toks, t...)
	}
	if !s.verify(ctx, &r.auth, 0, false, []byte(name), itoa(r.timestamp), toks) {
		return text(http.StatusUnauthorized, name+" signature verification failed")
	}
	return s.fanout(ctx, c, name, r, nil, func() map[string]any {
		e := map[string]any{}
		if r.unrevoke {
			n, err := s.cfg.Store.Unrevoke(ctx, r.account, r.tokens)
			if err != nil {
				return s.failedEntry(name, err)
			}
			e["count"] = int64(n)
		} else if err := s.cfg.Store.Revoke(ctx, r.account, r.tokens, c.nowMS()); err != nil {
			return s.failedEntry(name, err)
		}
		e["signature"] = s.sign([]byte(r.account.Hex()), itoa(r.timestamp), toks)
		return e
	})
}

// ---- revoked_subaccounts (§4.10) ----

type revokedReq struct {
	auth
	timestamp int64
}

func parseRevoked(p *params) (request, error) {
	r := &revokedReq{}
	if err := r.loadSigned(p, false, false); err != nil {
		return nil, err
	}
	var err error
	r.timestamp, err = requireTimestamp(p, "timestamp")
	return r, err
}

func (r *revokedReq) run(ctx context.Context, s *Server, c *call) response {
	if wrong := s.ours(c, r.account); wrong != nil {
		return *wrong
	}
	if outside(r.timestamp, c.nowMS(), sigTolerance) {
		return text(http.StatusNotAcceptable, "revoked_subaccounts timestamp too far from current time")
	}
	a := r.auth
	a.edPub = nil // parsed but not used, as upstream: works for Ed25519 accounts
	if !s.verify(ctx, &a, 0, false, []byte("revoked_subaccounts"), itoa(r.timestamp)) {
		return text(http.StatusUnauthorized, "revoked_subaccounts signature verification failed")
	}
	toks, err := s.cfg.Store.Revoked(ctx, r.account)
	if err != nil {
		s.cfg.Logger.Error("revoked_subaccounts failed", "err", err)
		return text(http.StatusInternalServerError, "Internal Server Error. Could not retrieve revoked_subaccounts for "+obfuscate(r.account))
	}
	list := make([]any, len(toks))
	for i, t := range toks {
		list[i] = t
	}
	body := map[string]any{"revoked_subaccounts": list}
	s.addMisc(body, c)
	return response{http.StatusOK, body}
}

// ---- get_swarm (§4.11) ----

type getSwarmReq struct{ account storage.Account }

func parseGetSwarm(p *params) (request, error) {
	var a auth
	if err := a.loadPubkey(p, true); err != nil {
		return nil, err
	}
	return &getSwarmReq{a.account}, nil
}

func (r *getSwarmReq) run(ctx context.Context, s *Server, c *call) response {
	id, members, _ := s.cfg.Swarm.Lookup(r.account)
	if len(members) == 0 {
		id = registry.NoSwarm
	}
	body := swarmJSON(id, members)
	s.addMisc(body, c)
	return response{http.StatusOK, body}
}

// ---- info (§4.12) ----

type infoReq struct{}

func parseInfo(p *params) (request, error) { return infoReq{}, nil }

func (infoReq) run(ctx context.Context, s *Server, c *call) response {
	body := map[string]any{
		"version":   []int{ProtocolVersion[0], ProtocolVersion[1], ProtocolVersion[2]},
		"timestamp": c.nowMS(),
	}
	s.addMisc(body, c)
	return response{http.StatusOK, body}
}
