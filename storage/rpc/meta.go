package rpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"sync"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/netstack/registry"
)

// ---- oxend_request (§4.13) ----

type oxendReq struct {
	endpoint string
	params   map[string]any
}

func parseOxendRequest(p *params) (request, error) {
	ep, has, err := p.str("endpoint")
	if err != nil {
		return nil, err
	}
	if !has {
		return nil, perr("Required field 'endpoint' missing")
	}
	if ep != "get_service_nodes" && ep != "ons_resolve" {
		return nil, perr("Invalid oxend endpoint '%s'", ep)
	}
	r := &oxendReq{endpoint: ep}
	var raw []byte
	if p.isBT() {
		s, has, err := p.str("params")
		if err != nil {
			return nil, err
		}
		if has {
			raw = []byte(s)
			if !json.Valid(raw) {
				return nil, perr("oxend_request params field does not contain valid json")
			}
		}
	} else {
		raw = p.raw("params")
	}
	if raw != nil && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		// oxend takes an object; anything else behaves like no params.
		_ = json.Unmarshal(raw, &r.params)
	}
	return r, nil
}

// serviceNodeFields are the get_service_nodes fields we can answer (§6.3).
var serviceNodeFields = []string{
	"service_node_pubkey", "swarm_id", "storage_port", "public_ip", "funded", "active",
	"pubkey_x25519", "pubkey_ed25519", "storage_lmq_port", "storage_server_version",
}

func (r *oxendReq) run(ctx context.Context, s *Server, c *call) response {
	if r.endpoint != "get_service_nodes" {
		// Names are resolved by an oxend; a snodebox node has none to ask.
		return text(http.StatusBadGateway, "oxend_request "+r.endpoint+" is not available: this node has no oxend connection")
	}
	snap := s.cfg.Swarm.Snapshot()
	hf := snap.Hardfork
	if hf == [2]int{} {
		hf = Hardfork
	}
	result := map[string]any{
		"height":         snap.Height,
		"block_hash":     snap.BlockHash,
		"hardfork":       hf[0],
		"snode_revision": hf[1],
		"status":         "OK",
	}
	if poll, _ := r.params["poll_block_hash"].(string); poll != "" && poll == snap.BlockHash {
		result["unchanged"] = true
	} else {
		result["unchanged"] = false
		want := wantedFields(r.params["fields"])
		states := make([]any, 0, len(snap.Nodes))
		for _, n := range snap.Nodes {
			states = append(states, serviceNodeState(n, want))
		}
		result["service_node_states"] = states
	}
	body := map[string]any{"result": result}
	s.addMisc(body, c)
	return response{http.StatusOK, body}
}

// wantedFields reads oxend's "fields" selector: {name: true} ([2.8]) or a
// list of names ([new]); nil selects everything.
func wantedFields(v any) map[string]bool {
	switch f := v.(type) {
	case map[string]any:
		out := map[string]bool{}
		for k, on := range f {
			if b, _ := on.(bool); b {
				out[k] = true
			}
		}
		return out
	case []any:
		out := map[string]bool{}
		for _, k := range f {
			if s, ok := k.(string); ok {
				out[s] = true
			}
		}
		return out
	}
	return nil
}

func serviceNodeState(n registry.Node, want map[string]bool) map[string]any {
	all := map[string]any{
		"service_node_pubkey":    hexOf(n.Legacy[:]),
		"swarm_id":               n.SwarmID,
		"storage_port":           int(n.HTTPSPort),
		"public_ip":              publicIP(n),
		"funded":                 true,
		"active":                 true,
		"pubkey_x25519":          hexOf(n.X25519[:]),
		"pubkey_ed25519":         n.Ed25519Hex(),
		"storage_lmq_port":       int(n.OMQPort),
		"storage_server_version": []int{int(n.Version[0]), int(n.Version[1]), int(n.Version[2])},
	}
	if want == nil {
		return all
	}
	out := map[string]any{}
	for _, k := range serviceNodeFields {
		if want[k] {
			out[k] = all[k]
		}
	}
	return out
}

func publicIP(n registry.Node) string {
	if !n.IP.IsValid() {
		return "0.0.0.0"
	}
	return n.IP.Unmap().String()
}

// ---- batch / sequence (§4.15) ----

// maxNesting bounds ifelse-in-ifelse chains (each level re-reads its JSON).
const maxNesting = 8

type subRequest struct {
	req request
}

type batchReq struct {
	sequence bool
	subs     []subRequest
}

// subrequest parses one {"method","params"} entry of a batch/sequence or an
// ifelse branch. allowMeta permits batch/sequence/ifelse (ifelse branches).
func parseSub(p *params, m map[string]json.RawMessage, md map[string]any, allowMeta bool, what string) (request, error) {
	var method string
	var sub *params
	if md != nil {
		mb, ok := md["method"].([]byte)
		if !ok {
			return nil, perr("Invalid %s: subrequests must have a method", what)
		}
		method = string(mb)
		pd, ok := md["params"].(map[string]any)
		if !ok {
			return nil, perr("Invalid %s: subrequests must have a params dict", what)
		}
		sub = &params{bt: bencode.Dict(pd), depth: p.depth + 1}
	} else {
		mr, hasM := m["method"]
		pr, hasP := m["params"]
		var ps map[string]json.RawMessage
		if !hasM || !hasP || json.Unmarshal(mr, &method) != nil || !bytes.HasPrefix(bytes.TrimSpace(mr), []byte(`"`)) ||
			json.Unmarshal(pr, &ps) != nil || ps == nil {
			return nil, perr("Invalid %s: subrequests must have method/params keys", what)
		}
		sub = &params{j: ps, depth: p.depth + 1}
	}
	info, ok := methods[method]
	if !ok {
		return nil, perr("Invalid %s: invalid method \"%s\"", what, method)
	}
	if info.meta && !allowMeta {
		return nil, perr("Invalid batch subrequest: subrequests may not contain meta-requests")
	}
	return info.parse(sub)
}

func parseBatch(sequence bool) parseFunc {
	return func(p *params) (request, error) {
		if p.depth >= maxNesting {
			return nil, perr("Invalid batch request: nested too deeply")
		}
		r := &batchReq{sequence: sequence}
		var items []any
		if p.isBT() {
			l, ok, err := p.bt.List("requests")
			if err != nil || !ok {
				return nil, perr(`Invalid batch request: no valid "requests" field`)
			}
			items = l
		} else {
			var raws []json.RawMessage
			raw := p.raw("requests")
			if raw == nil || raw[0] != '[' || json.Unmarshal(raw, &raws) != nil {
				return nil, perr(`Invalid batch request: no valid "requests" field`)
			}
			for _, x := range raws {
				items = append(items, x)
			}
		}
		if len(items) == 0 {
			return nil, perr(`Invalid batch request: no valid "requests" field`)
		}
		if len(items) > MaxBatch {
			return nil, perr("Invalid batch request: subrequest limit exceeded")
		}
		for _, it := range items {
			var req request
			var err error
			switch x := it.(type) {
			case json.RawMessage:
				var m map[string]json.RawMessage
				if json.Unmarshal(x, &m) != nil || m == nil {
					return nil, perr("Invalid batch request: requests must be objects")
				}
				req, err = parseSub(p, m, nil, false, "batch subrequest")
			case map[string]any:
				req, err = parseSub(p, nil, x, false, "batch subrequest")
			default:
				return nil, perr("Invalid batch request: requests must be dicts")
			}
			if err != nil {
				return nil, err
			}
			r.subs = append(r.subs, subRequest{req})
		}
		return r, nil
	}
}

// subResult is {"code", "body"} of one subrequest.
func subResult(r response) map[string]any {
	return map[string]any{"code": r.status, "body": r.body}
}

func (r *batchReq) run(ctx context.Context, s *Server, c *call) response {
	results := make([]any, 0, len(r.subs))
	if r.sequence {
		for _, sub := range r.subs {
			res := sub.req.run(ctx, s, c)
			results = append(results, subResult(res))
			if res.status < 200 || res.status > 299 {
				break
			}
		}
	} else {
		// Subrequests start in order, each once the previous one's local
		// part is done, while their swarm replication overlaps.
		out := make([]response, len(r.subs))
		var wg sync.WaitGroup
		for i, sub := range r.subs {
			ready := make(chan struct{})
			var once sync.Once
			signal := func() { once.Do(func() { close(ready) }) }
			sc := *c
			sc.localDone = signal
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer signal()
				defer func() {
					if p := recover(); p != nil {
						s.cfg.Logger.Error("batch subrequest panicked", "panic", p)
						out[i] = text(http.StatusInternalServerError, "request failed")
					}
				}()
				out[i] = sub.req.run(ctx, s, &sc)
			}()
			<-ready
		}
		wg.Wait()
		for _, res := range out {
			results = append(results, subResult(res))
		}
	}
	return response{http.StatusOK, map[string]any{"results": results}}
}

// ---- ifelse (§4.15) ----

type ifElseReq struct {
	hfGE, hfLT         []int64
	vGE, vLT           []int64
	heightGE, heightLT *int64
	then, els          request
}

func (p *params) intList(key string) ([]int64, error) {
	if !p.has(key) {
		return nil, nil
	}
	if n, _, err := p.integer(key); err == nil {
		return []int64{n}, nil
	}
	var out []int64
	if p.isBT() {
		l, _, err := p.bt.List(key)
		if err != nil {
			return nil, typeErr(key, "integer array")
		}
		for _, e := range l {
			n, ok := e.(int64)
			if !ok {
				return nil, typeErr(key, "integer array")
			}
			out = append(out, n)
		}
		return out, nil
	}
	if json.Unmarshal(p.raw(key), &out) != nil {
		return nil, typeErr(key, "integer array")
	}
	return out, nil
}

func parseIfElse(p *params) (request, error) {
	if p.depth >= maxNesting {
		return nil, perr("Invalid ifelse request: nested too deeply")
	}
	r := &ifElseReq{}
	var cond *params
	if p.isBT() {
		d, ok := p.bt["if"].(map[string]any)
		if !ok {
			return nil, perr(`Invalid ifelse request: no valid "if" field`)
		}
		cond = &params{bt: bencode.Dict(d)}
	} else {
		var m map[string]json.RawMessage
		raw := p.raw("if")
		if raw == nil || raw[0] != '{' || json.Unmarshal(raw, &m) != nil {
			return nil, perr(`Invalid ifelse request: no valid "if" field`)
		}
		cond = &params{j: m}
	}
	var err error
	for _, f := range []struct {
		key string
		dst *[]int64
	}{{"hf_at_least", &r.hfGE}, {"hf_before", &r.hfLT}, {"v_at_least", &r.vGE}, {"v_before", &r.vLT}} {
		if *f.dst, err = cond.intList(f.key); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		key string
		dst **int64
	}{{"height_at_least", &r.heightGE}, {"height_before", &r.heightLT}} {
		n, has, err := cond.integer(f.key)
		if err != nil {
			return nil, err
		}
		if has {
			*f.dst = &n
		}
	}
	if len(r.hfGE) == 0 && len(r.hfLT) == 0 && len(r.vGE) == 0 && len(r.vLT) == 0 && r.heightGE == nil && r.heightLT == nil {
		return nil, perr(`Invalid ifelse request: must specify at least one "if" condition`)
	}
	for _, br := range []struct {
		key string
		dst *request
	}{{"then", &r.then}, {"else", &r.els}} {
		if !p.has(br.key) {
			continue
		}
		what := "ifelse request: " + br.key
		if p.isBT() {
			d, ok := p.bt[br.key].(map[string]any)
			if !ok {
				return nil, perr("Invalid ifelse request: %s must be a dict", br.key)
			}
			*br.dst, err = parseSub(p, nil, d, true, what)
		} else {
			var m map[string]json.RawMessage
			if json.Unmarshal(p.raw(br.key), &m) != nil || m == nil {
				return nil, perr("Invalid ifelse request: %s must be an object", br.key)
			}
			*br.dst, err = parseSub(p, m, nil, true, what)
		}
		if err != nil {
			return nil, err
		}
	}
	if r.then == nil && r.els == nil {
		return nil, perr(`Invalid ifelse request: at least one of "then"/"else" required`)
	}
	return r, nil
}

// fixed pads or truncates a version-like list to n elements.
func fixed(l []int64, n int) []int64 {
	out := make([]int64, n)
	copy(out, l)
	return out
}

// less compares version tuples lexicographically.
func less(a, b []int64) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func (r *ifElseReq) run(ctx context.Context, s *Server, c *call) response {
	hf := s.hf()
	height := int64(s.cfg.Swarm.Snapshot().Height)
	cur := []int64{int64(hf[0]), int64(hf[1])}
	ver := []int64{int64(ProtocolVersion[0]), int64(ProtocolVersion[1]), int64(ProtocolVersion[2])}
	cond := true
	if len(r.hfGE) > 0 {
		cond = cond && !less(cur, fixed(r.hfGE, 2))
	}
	if len(r.hfLT) > 0 {
		cond = cond && less(cur, fixed(r.hfLT, 2))
	}
	if len(r.vGE) > 0 {
		cond = cond && !less(ver, fixed(r.vGE, 3))
	}
	if len(r.vLT) > 0 {
		cond = cond && less(ver, fixed(r.vLT, 3))
	}
	if r.heightGE != nil {
		cond = cond && height >= *r.heightGE
	}
	if r.heightLT != nil {
		cond = cond && height < *r.heightLT
	}
	body := map[string]any{
		"hf":        hf,
		"v":         []int{ProtocolVersion[0], ProtocolVersion[1], ProtocolVersion[2]},
		"height":    height,
		"condition": cond,
	}
	branch := r.els
	if cond {
		branch = r.then
	}
	if branch != nil {
		body["result"] = subResult(branch.run(ctx, s, c))
	}
	return response{http.StatusOK, body}
}

// ---- active_nodes_bin (§4.14) ----

// activeNodeRecord is the size of one node in active_nodes_bin.
const activeNodeRecord = 51

type activeNodesReq struct{}

func parseActiveNodes(p *params) (request, error) { return activeNodesReq{}, nil }

// run answers 51 bytes per active node: ed25519 (32), swarm id (8, big
// endian), IPv4 (4), HTTPS port (2), OMQ/QUIC port (2), version (3 bytes,
// each capped at 255). Unknown contact info is zeros.
func (activeNodesReq) run(ctx context.Context, s *Server, c *call) response {
	nodes := s.cfg.Swarm.Snapshot().Nodes
	out := make([]byte, 0, len(nodes)*activeNodeRecord)
	for _, n := range nodes {
		out = append(out, n.Ed25519[:]...)
		out = binary.BigEndian.AppendUint64(out, n.SwarmID)
		var ip [4]byte
		if a := n.IP.Unmap(); a.Is4() {
			ip = a.As4()
		}
		out = append(out, ip[:]...)
		out = binary.BigEndian.AppendUint16(out, n.HTTPSPort)
		out = binary.BigEndian.AppendUint16(out, n.OMQPort)
		for _, v := range n.Version {
			out = append(out, byte(min(v, 255)))
		}
	}
	return response{http.StatusOK, binaryBody(out)}
}
