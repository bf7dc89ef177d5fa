package node

import (
	"context"
	"encoding/base64"
	"strconv"

	"github.com/snodebox/snodebox/appliance/supervise"
	"github.com/snodebox/snodebox/storage/rpc"
)

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// SupervisedServices converts Services for appliance/supervise.
func (n *Node) SupervisedServices() []supervise.Service {
	var out []supervise.Service
	for _, s := range n.Services() {
		out = append(out, supervise.Service{Name: s.Name, Run: s.Run})
	}
	return out
}

// Run starts every service under a supervisor with the default policy
// (capped exponential backoff, crash-loop detection, panics recovered) and
// returns once ctx ended and all services stopped. The appliance runs its
// own supervisor over SupervisedServices to report states and crash loops.
func (n *Node) Run(ctx context.Context) error {
	supervise.New(supervise.DefaultPolicy, nil, n.log).Run(ctx, n.SupervisedServices())
	return nil
}

func protocolString() string {
	v := rpc.ProtocolVersion
	return strconv.Itoa(v[0]) + "." + strconv.Itoa(v[1]) + "." + strconv.Itoa(v[2])
}

func hex64(v uint64) string { return strconv.FormatUint(v, 16) }
