// Package registry says who is in the network: the service-node list with
// swarm ids (spec §6.3 fields), from one of several sources behind Source.
package registry

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
)

// NoSwarm is the swarm id of a node that is not in any swarm.
const NoSwarm uint64 = 1<<64 - 1

// Node is one service node as the network publishes it.
type Node struct {
	Ed25519   [32]byte // identity: signs answers, onion destination, peer TLS
	X25519    [32]byte // onion key
	Legacy    [32]byte // primary key; equals Ed25519 for snodebox nodes
	IP        netip.Addr
	HTTPSPort uint16
	OMQPort   uint16 // also the QUIC port upstream; 0 when not served
	SwarmID   uint64
	Version   [3]uint16
}

// Ed25519Hex is the node's identity as lowercase hex.
func (n Node) Ed25519Hex() string { return hex.EncodeToString(n.Ed25519[:]) }

// HTTPSAddr is "ip:port" of the node's HTTPS listener.
func (n Node) HTTPSAddr() string { return netip.AddrPortFrom(n.IP, n.HTTPSPort).String() }

func (n Node) String() string { return fmt.Sprintf("%s@%s", n.Ed25519Hex()[:12], n.HTTPSAddr()) }

// Snapshot is the network at one moment.
type Snapshot struct {
	Nodes     []Node
	Height    uint64
	BlockHash string
	Hardfork  [2]int // [major, snode revision]
}

// Find returns the node with the given Ed25519 key.
func (s *Snapshot) Find(ed [32]byte) (Node, bool) {
	for _, n := range s.Nodes {
		if n.Ed25519 == ed {
			return n, true
		}
	}
	return Node{}, false
}

// Source yields the current network. Fetch is called periodically; a source
// that can tell nothing changed returns the previous snapshot and changed=false.
type Source interface {
	Fetch(ctx context.Context) (snap Snapshot, changed bool, err error)
	// Name is shown on the status page ("self", "oxend:URL", "devnet:URL").
	Name() string
}
