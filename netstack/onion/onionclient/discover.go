package onionclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// Discover learns the network from one node, for a client that has only
// its address: the node list from its oxend_request get_service_nodes
// answer (spec §4.13), and which of them the node at nodeURL is, from the
// Ed25519 key its TLS certificate holds. The node's published address may
// not be reachable from here (a QEMU guest's, a LAN's), so callers send the
// first hop to nodeURL itself.
func Discover(ctx context.Context, nodeURL string) (nodes []registry.Node, self registry.Node, err error) {
	u, err := url.Parse(nodeURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, self, fmt.Errorf("--node %q: want https://HOST:PORT", nodeURL)
	}
	code, body, err := rpcclient.Do(ctx, nodeURL, "oxend_request", map[string]any{"endpoint": "get_service_nodes"})
	if err != nil {
		return nil, self, fmt.Errorf("ask %s for the node list: %w", nodeURL, err)
	}
	if code != 200 {
		return nil, self, fmt.Errorf("ask %s for the node list: status %d: %s", nodeURL, code, body)
	}
	var ans struct {
		Result registry.GetServiceNodesResult `json:"result"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, self, fmt.Errorf("node list from %s: %w", nodeURL, err)
	}
	for _, st := range ans.Result.ServiceNodeStates {
		n, ok, err := registry.NodeFromState(st)
		if err == nil && ok {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return nil, self, fmt.Errorf("%s lists no nodes", nodeURL)
	}
	key, err := tlsKey(ctx, u.Host)
	if err != nil {
		return nil, self, err
	}
	for _, n := range nodes {
		if n.Ed25519 == key {
			return nodes, n, nil
		}
	}
	return nil, self, fmt.Errorf("the node at %s (key %x) is not in its own node list", nodeURL, key[:6])
}

func tlsKey(ctx context.Context, host string) ([32]byte, error) {
	var k [32]byte
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}}
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return k, fmt.Errorf("connect %s: %w", host, err)
	}
	defer c.Close()
	cs := c.(*tls.Conn).ConnectionState()
	pub, err := identity.PeerKey(&cs)
	if err != nil {
		return k, fmt.Errorf("%s: %w", host, err)
	}
	if len(pub) != 32 {
		return k, errors.New("peer key is not Ed25519")
	}
	copy(k[:], pub)
	return k, nil
}
