package onionclient

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/registry"
)

// nodeEntry is one node of a devnet nodes.json.
type nodeEntry struct {
	Ed25519 string `json:"ed25519"`
	X25519  string `json:"x25519"`
	HTTPS   string `json:"https"`
	SwarmID string `json:"swarm_id"`
}

// LoadNodes reads a devnet nodes.json: a JSON list of {"ed25519": hex,
// "x25519": hex, "https": "https://IP:PORT", "swarm_id": hex}.
func LoadNodes(path string) ([]registry.Node, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read node list: %w", err)
	}
	nodes, err := ParseNodes(raw)
	if err != nil {
		return nil, fmt.Errorf("node list %s: %w", path, err)
	}
	return nodes, nil
}

// ParseNodes parses the nodes.json format. A missing x25519 key is derived
// from the ed25519 key (spec §9); a missing swarm_id is registry.NoSwarm.
func ParseNodes(raw []byte) ([]registry.Node, error) {
	var entries []nodeEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, errors.New("no nodes listed")
	}
	out := make([]registry.Node, 0, len(entries))
	for i, e := range entries {
		var n registry.Node
		if err := decodeKey(e.Ed25519, n.Ed25519[:]); err != nil {
			return nil, fmt.Errorf("node %d ed25519: %w", i, err)
		}
		n.Legacy = n.Ed25519
		if e.X25519 == "" {
			x, err := identity.EdPubToX25519(n.Ed25519[:])
			if err != nil {
				return nil, fmt.Errorf("node %d: %w", i, err)
			}
			n.X25519 = x
		} else if err := decodeKey(e.X25519, n.X25519[:]); err != nil {
			return nil, fmt.Errorf("node %d x25519: %w", i, err)
		}
		u, err := url.Parse(e.HTTPS)
		if err != nil || u.Scheme != "https" {
			return nil, fmt.Errorf("node %d https %q: want https://IP:PORT", i, e.HTTPS)
		}
		ap, err := netip.ParseAddrPort(u.Host)
		if err != nil {
			return nil, fmt.Errorf("node %d https %q: %w", i, e.HTTPS, err)
		}
		n.IP, n.HTTPSPort = ap.Addr().Unmap(), ap.Port()
		n.SwarmID = registry.NoSwarm
		if e.SwarmID != "" {
			if n.SwarmID, err = strconv.ParseUint(e.SwarmID, 16, 64); err != nil {
				return nil, fmt.Errorf("node %d swarm_id %q: %w", i, e.SwarmID, err)
			}
		}
		out = append(out, n)
	}
	return out, nil
}

func decodeKey(s string, dst []byte) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("want %d hex digits, got %d", 2*len(dst), len(s))
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}

// PathByKeys resolves a list of Ed25519 keys (full hex, or unique hex
// prefixes) against nodes. Keys may repeat.
func PathByKeys(nodes []registry.Node, keys []string) ([]registry.Node, error) {
	if len(keys) == 0 {
		return nil, errors.New("empty path")
	}
	var path []registry.Node
	for _, k := range keys {
		k = strings.ToLower(strings.TrimSpace(k))
		var match []registry.Node
		for _, n := range nodes {
			if k != "" && strings.HasPrefix(n.Ed25519Hex(), k) {
				match = append(match, n)
			}
		}
		switch len(match) {
		case 0:
			return nil, fmt.Errorf("no node with ed25519 %q in the node list", k)
		case 1:
			path = append(path, match[0])
		default:
			return nil, fmt.Errorf("ed25519 prefix %q matches %d nodes", k, len(match))
		}
	}
	return path, nil
}

// RandomPath picks hops distinct nodes at random; the last one satisfies
// dest (nil: any node), the others are any other nodes.
func RandomPath(nodes []registry.Node, hops int, dest func(registry.Node) bool) ([]registry.Node, error) {
	if hops < 1 {
		return nil, fmt.Errorf("a path needs at least one node, asked for %d", hops)
	}
	if hops > len(nodes) {
		return nil, fmt.Errorf("asked for %d hops, the node list has %d nodes", hops, len(nodes))
	}
	var dests []int
	for i, n := range nodes {
		if dest == nil || dest(n) {
			dests = append(dests, i)
		}
	}
	if len(dests) == 0 {
		return nil, errors.New("no node in the list can be the destination")
	}
	d := dests[rand.IntN(len(dests))]
	rest := make([]registry.Node, 0, len(nodes)-1)
	for i, n := range nodes {
		if i != d {
			rest = append(rest, n)
		}
	}
	rand.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	return append(rest[:hops-1:hops-1], nodes[d]), nil
}
