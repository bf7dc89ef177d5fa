package devnet

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// netnsNet puts each node in its own network namespace, joined by veth
// pairs to a bridge we create. Addresses come from 198.18.0.0/15, the range
// RFC 2544 sets aside for network tests, with a /24 picked from the devnet
// directory so two devnets on one host do not collide. The host end of the
// bridge gets .1 so snodectl and tests can reach the nodes; nothing is
// routed or forwarded beyond the bridge.
type netnsNet struct {
	id     string // short, from the devnet dir: names stay unique and ≤ 15 chars
	prefix string // "198.18.N" or "198.19.N"
	bridge string
	dir    string
	nodes  []int
}

func newNetnsNet(dir string) (*netnsNet, error) {
	id := shortID(dir)
	h := sha256.Sum256([]byte(dir))
	prefix := fmt.Sprintf("198.%d.%d", 18+int(h[2]&1), h[3])
	n := &netnsNet{id: id, prefix: prefix, bridge: "sbx" + id + "br", dir: dir}
	cleanupNetns(dir) // leftovers of a devnet that was not stopped cleanly
	steps := [][]string{
		{"link", "add", n.bridge, "type", "bridge"},
		{"addr", "add", prefix + ".1/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			n.cleanup()
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "netns"), []byte(n.bridge+"\n"), 0o644); err != nil {
		n.cleanup()
		return nil, err
	}
	return n, nil
}

func (n *netnsNet) name(i int) string { return "sbx" + n.id + "-" + strconv.Itoa(i) }

func (n *netnsNet) nodeIP(i int) string { return n.prefix + "." + strconv.Itoa(10+i) }

func (n *netnsNet) addNode(i int) error {
	if i > 200 {
		return errors.New("netns devnet: at most 200 nodes")
	}
	ns := n.name(i)
	host, inner := "sbx"+n.id+"h"+strconv.Itoa(i), "sbx"+n.id+"n"+strconv.Itoa(i)
	steps := [][]string{
		{"netns", "add", ns},
		{"link", "add", host, "type", "veth", "peer", "name", inner},
		{"link", "set", host, "master", n.bridge},
		{"link", "set", host, "up"},
		{"link", "set", inner, "netns", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "set", inner, "name", "eth0"},
		{"-n", ns, "addr", "add", n.nodeIP(i) + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	n.nodes = append(n.nodes, i)
	f, err := os.OpenFile(filepath.Join(n.dir, "netns"), os.O_APPEND|os.O_WRONLY, 0o644)
	if err == nil {
		fmt.Fprintln(f, ns)
		f.Close()
	}
	return nil
}

// cleanup deletes the namespaces (their veth ends go with them) and the
// bridge.
func (n *netnsNet) cleanup() error {
	return cleanupNetns(n.dir)
}

// cleanupNetns removes what DIR/netns lists: namespaces and the bridge.
func cleanupNetns(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "netns"))
	if err != nil {
		return nil
	}
	var errs []error
	lines := strings.Fields(string(b))
	for _, name := range lines[min(1, len(lines)):] {
		if err := ip("netns", "del", name); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
	}
	if len(lines) > 0 {
		if err := ip("link", "del", lines[0]); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	os.Remove(filepath.Join(dir, "netns"))
	return errors.Join(errs...)
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
