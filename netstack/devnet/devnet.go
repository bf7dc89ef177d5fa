// Package devnet runs a local Session network of snoded processes: on
// loopback, or each node in its own network namespace. Node 0 serves the
// devnet registry (--serve-registry); every node announces itself there and
// learns its swarm from it, as on a real network with oxend.
package devnet

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options describe a devnet.
type Options struct {
	Nodes    int    // how many nodes to start (≥ 1)
	Dir      string // state: one data directory per node, pid files, logs, nodes.json
	BasePort int    // loopback: node i listens on BasePort+2i (HTTPS) and +2i+1 (status); default 23100
	Netns    bool   // each node in its own network namespace (root only)
	Snoded   string // snoded binary; "" = next to this executable, else `go build`
	LogLevel string // passed to snoded (default info)
	// Transport is how nodes talk to each other: "https" (default) or
	// "omq" (OxenMQ/CURVE, as upstream storage servers do; each node also
	// keeps HTTPS for clients).
	Transport string
	// Procs is each node's GOMAXPROCS. 0 shares this machine's cores out
	// among the nodes (at least one each), as a container's CPU limit
	// would: every node stands in for a board of its own, and nodes that
	// each schedule onto every core spin their idle threads against one
	// another (a 3-node swarm on 2 cores: 15 % more CPU per store).
	// -1 leaves each node all the cores. A GOMAXPROCS in the environment
	// wins over both.
	Procs int
	// Profiling starts every node with --pprof: each serves CPU profiles
	// on its status address to its own host (so, in a netns devnet, to
	// nobody outside its namespace).
	Profiling bool
	// Progress receives one line per step (nil: discarded).
	Progress io.Writer
}

// NodeInfo is one node as nodes.json lists it.
type NodeInfo struct {
	Ed25519 string `json:"ed25519"`
	X25519  string `json:"x25519"`
	HTTPS   string `json:"https"`
	SwarmID string `json:"swarm_id"`
	Status  string `json:"status_url"`
	Index   int    `json:"index"`
	PID     int    `json:"pid"`
}

// NoSwarm is how the status page spells "in no swarm".
const NoSwarm = "ffffffffffffffff"

// Devnet is a running devnet.
type Devnet struct {
	opts     Options
	registry string // devnet:URL every node uses
	ns       *netnsNet

	mu    sync.Mutex
	nodes []*proc
}

type proc struct {
	index  int
	cmd    *exec.Cmd
	done   chan struct{}
	https  string // https://ip:port
	status string // http://ip:port
	dir    string
	log    *os.File
	killed bool
}

func (d *Devnet) progress(format string, args ...any) {
	if d.opts.Progress != nil {
		fmt.Fprintf(d.opts.Progress, format+"\n", args...)
	}
}

// Up starts a devnet and returns once every node is in a swarm and
// DIR/nodes.json is written. On error everything started is stopped.
func Up(ctx context.Context, opts Options) (*Devnet, error) {
	if opts.Nodes < 1 {
		return nil, errors.New("devnet: --nodes must be at least 1")
	}
	if opts.Dir == "" {
		return nil, errors.New("devnet: --dir is required")
	}
	if opts.BasePort == 0 {
		opts.BasePort = 23100
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.Procs < -1 {
		return nil, fmt.Errorf("devnet: --procs %d: want a count, 0 (share the cores) or -1 (all cores each)", opts.Procs)
	}
	if opts.Procs == 0 {
		opts.Procs = max(1, runtime.NumCPU()/opts.Nodes)
	}
	switch opts.Transport {
	case "":
		opts.Transport = "https"
	case "https", "omq":
	default:
		return nil, fmt.Errorf("devnet: --transport %q: want https or omq", opts.Transport)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("devnet dir %s: %w", dir, err)
	}
	if pids, _ := readPIDs(dir); len(pids) > 0 && anyAlive(pids) {
		return nil, fmt.Errorf("a devnet is already running in %s (snodectl devnet down --dir %s)", dir, dir)
	}
	if opts.Snoded == "" {
		if opts.Snoded, err = FindSnoded(dir); err != nil {
			return nil, err
		}
	}
	d := &Devnet{opts: opts}
	if opts.Netns {
		if os.Geteuid() != 0 {
			return nil, errors.New("devnet: --netns needs root")
		}
		d.ns, err = newNetnsNet(dir)
		if err != nil {
			return nil, err
		}
		d.progress("network namespaces on bridge %s, %s.0/24", d.ns.bridge, d.ns.prefix)
	}
	ok := false
	defer func() {
		if !ok {
			d.Stop()
		}
	}()
	for i := 0; i < opts.Nodes; i++ {
		if _, err := d.start(i); err != nil {
			return nil, err
		}
	}
	if err := d.WaitReady(ctx); err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

// Registry is the devnet registry's base URL (node 0).
func (d *Devnet) Registry() string { return strings.TrimPrefix(d.registry, "devnet:") }

func (d *Devnet) addrs(i int) (listen, https, status, statusListen string) {
	if d.ns != nil {
		ip := d.ns.nodeIP(i)
		return ip + ":22021", "https://" + ip + ":22021", "http://" + ip + ":8080", ip + ":8080"
	}
	p := d.opts.BasePort + 2*i
	return "127.0.0.1:" + strconv.Itoa(p), "https://127.0.0.1:" + strconv.Itoa(p),
		"http://127.0.0.1:" + strconv.Itoa(p+1), "127.0.0.1:" + strconv.Itoa(p+1)
}

// OMQPortOffset: on loopback, node i's OMQ port is BasePort+OMQPortOffset+i,
// clear of the HTTPS/status pairs of up to 50 nodes.
const OMQPortOffset = 100

// omqAddr is node i's OMQ listener: port 22020 in its namespace, or
// BasePort+OMQPortOffset+i on loopback.
func (d *Devnet) omqAddr(i int) string {
	if d.ns != nil {
		return d.ns.nodeIP(i) + ":22020"
	}
	return "127.0.0.1:" + strconv.Itoa(d.opts.BasePort+OMQPortOffset+i)
}

// start launches node i.
func (d *Devnet) start(i int) (*proc, error) {
	listen, https, status, statusListen := d.addrs(i)
	if i == 0 {
		d.registry = "devnet:" + https
	}
	ndir := filepath.Join(d.opts.Dir, "node-"+strconv.Itoa(i))
	if err := os.MkdirAll(ndir, 0o700); err != nil {
		return nil, err
	}
	args := []string{"run", "--data", ndir, "--listen", listen, "--status", statusListen,
		"--registry", d.registry, "--allow-private-proxy", "--no-rate-limit", "--log-level", d.opts.LogLevel}
	if d.opts.Transport == "omq" {
		args = append(args, "--omq-listen", d.omqAddr(i))
	}
	if i == 0 {
		args = append(args, "--serve-registry")
	}
	if d.opts.Profiling {
		args = append(args, "--pprof")
	}
	name, argv := d.opts.Snoded, args
	if d.ns != nil {
		if err := d.ns.addNode(i); err != nil {
			return nil, err
		}
		name, argv = "ip", append([]string{"netns", "exec", d.ns.name(i), d.opts.Snoded}, args...)
	}
	logf, err := os.OpenFile(filepath.Join(ndir, "snoded.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if d.opts.Procs > 0 && os.Getenv("GOMAXPROCS") == "" {
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(d.opts.Procs))
	}
	// Own process group: a Ctrl-C on snodectl reaches us, and we stop the
	// nodes in order instead of the terminal killing them mid-write.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start node %d: %w", i, err)
	}
	p := &proc{index: i, cmd: cmd, done: make(chan struct{}), https: https, status: status, dir: ndir, log: logf}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	if err := os.WriteFile(filepath.Join(ndir, "snoded.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return nil, err
	}
	d.mu.Lock()
	for len(d.nodes) <= i {
		d.nodes = append(d.nodes, nil)
	}
	d.nodes[i] = p
	d.mu.Unlock()
	d.progress("node %d: pid %d, %s, log %s", i, cmd.Process.Pid, https, filepath.Join(ndir, "snoded.log"))
	return p, nil
}

// Exited is closed when every node has stopped (for instance after
// `snodectl devnet down` from another terminal).
func (d *Devnet) Exited() <-chan struct{} {
	ch := make(chan struct{})
	d.mu.Lock()
	procs := append([]*proc(nil), d.nodes...)
	d.mu.Unlock()
	go func() {
		for _, p := range procs {
			if p != nil {
				<-p.done
			}
		}
		close(ch)
	}()
	return ch
}

// Add starts one more node and waits until every live node is in a swarm.
func (d *Devnet) Add(ctx context.Context) (int, error) {
	d.mu.Lock()
	i := len(d.nodes)
	d.mu.Unlock()
	if _, err := d.start(i); err != nil {
		return 0, err
	}
	return i, d.WaitReady(ctx)
}

// Restart starts node i again (after Kill) with its data directory, and
// waits until the devnet has settled.
func (d *Devnet) Restart(ctx context.Context, i int) error {
	d.mu.Lock()
	p := d.nodes[i]
	d.mu.Unlock()
	if p != nil && !p.killed {
		return fmt.Errorf("node %d is running", i)
	}
	if d.ns != nil {
		ip("netns", "del", d.ns.name(i)) // start() recreates it
	}
	if _, err := d.start(i); err != nil {
		return err
	}
	return d.WaitReady(ctx)
}

// Kill stops node i abruptly (SIGKILL), as a power cut would.
func (d *Devnet) Kill(i int) error {
	d.mu.Lock()
	p := d.nodes[i]
	d.mu.Unlock()
	if p == nil {
		return fmt.Errorf("no node %d", i)
	}
	p.killed = true
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	os.Remove(filepath.Join(p.dir, "snoded.pid"))
	d.progress("node %d killed", i)
	return nil
}

// Status is a node's /status.json (the fields the devnet reads).
type Status struct {
	Healthy bool     `json:"healthy"`
	Reasons []string `json:"reasons"`
	Ed25519 string   `json:"ed25519"`
	X25519  string   `json:"x25519"`
	SwarmID string   `json:"swarm_id"`
	Members []string `json:"swarm_members"`
	// Fsyncs counts the node's database syncs since start (benchmarks
	// divide it by stores: how well writes group).
	Fsyncs int64 `json:"fsyncs"`
}

var statusClient = &http.Client{Timeout: 3 * time.Second}

func fetchStatus(ctx context.Context, url string) (Status, error) {
	var st Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/status.json", nil)
	if err != nil {
		return st, err
	}
	resp, err := statusClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status page: HTTP %d", resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// WaitReady waits until every live node reports a swarm and all agree on
// the membership, then writes nodes.json.
func (d *Devnet) WaitReady(ctx context.Context) error {
	last := ""
	for {
		infos, notReady, err := d.Nodes(ctx)
		if err == nil && notReady == 0 {
			if err := d.writeNodes(infos); err != nil {
				return err
			}
			swarms := map[string]int{}
			for _, n := range infos {
				swarms[n.SwarmID]++
			}
			d.progress("devnet ready: %d nodes in %d swarms; %s", len(infos), len(swarms), filepath.Join(d.opts.Dir, "nodes.json"))
			return nil
		}
		msg := fmt.Sprintf("waiting: %d of %d nodes not in a swarm yet", notReady, len(infos))
		if err != nil {
			msg = "waiting: " + err.Error()
		}
		if msg != last {
			d.progress("%s", msg)
			last = msg
		}
		if err := d.exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// exited reports a node that died on its own (not by Kill).
func (d *Devnet) exited() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.nodes {
		if p == nil || p.killed {
			continue
		}
		select {
		case <-p.done:
			log := filepath.Join(p.dir, "snoded.log")
			return fmt.Errorf("node %d exited: %v (log %s)%s", p.index, p.cmd.ProcessState, log, logTail(log, 12))
		default:
		}
	}
	return nil
}

// Nodes reads every live node's status; notReady counts nodes not in a
// swarm (or whose swarm the others do not agree on yet).
func (d *Devnet) Nodes(ctx context.Context) (infos []NodeInfo, notReady int, err error) {
	d.mu.Lock()
	procs := append([]*proc(nil), d.nodes...)
	d.mu.Unlock()
	for _, p := range procs {
		if p == nil || p.killed {
			continue
		}
		st, serr := fetchStatus(ctx, p.status)
		if serr != nil {
			err = fmt.Errorf("node %d: %w", p.index, serr)
			notReady++
			infos = append(infos, NodeInfo{Index: p.index, HTTPS: p.https, Status: p.status, PID: p.cmd.Process.Pid, SwarmID: NoSwarm})
			continue
		}
		if st.SwarmID == "" || st.SwarmID == NoSwarm || !st.Healthy {
			notReady++
		}
		infos = append(infos, NodeInfo{Ed25519: st.Ed25519, X25519: st.X25519, HTTPS: p.https, SwarmID: st.SwarmID, Status: p.status, Index: p.index, PID: p.cmd.Process.Pid})
	}
	if notReady == 0 && err == nil {
		// Every node must agree with every other about swarm membership:
		// a node still on an older snapshot would answer 421 wrongly.
		bySwarm := map[string][]string{}
		for _, n := range infos {
			bySwarm[n.SwarmID] = append(bySwarm[n.SwarmID], n.Ed25519)
		}
		for _, p := range procs {
			if p == nil || p.killed {
				continue
			}
			st, serr := fetchStatus(ctx, p.status)
			if serr != nil {
				return infos, 1, serr
			}
			if !sameSet(st.Members, bySwarm[st.SwarmID]) {
				return infos, 1, fmt.Errorf("node %d: swarm %s membership not settled", p.index, st.SwarmID)
			}
		}
	}
	return infos, notReady, err
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

func (d *Devnet) writeNodes(infos []NodeInfo) error {
	b, err := json.MarshalIndent(infos, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(d.opts.Dir, "nodes.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(d.opts.Dir, "nodes.json"))
}

// Stop stops every node (SIGTERM, then SIGKILL after 10 s) and removes the
// namespaces.
func (d *Devnet) Stop() error {
	d.mu.Lock()
	procs := append([]*proc(nil), d.nodes...)
	d.mu.Unlock()
	for _, p := range procs {
		if p != nil && !p.killed {
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	for _, p := range procs {
		if p == nil || p.killed {
			continue
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		os.Remove(filepath.Join(p.dir, "snoded.pid"))
	}
	var err error
	if d.ns != nil {
		err = d.ns.cleanup()
	}
	d.progress("devnet stopped")
	return err
}

// Down stops a devnet started by another process from its pid files.
func Down(dir string, progress io.Writer) error {
	pids, err := readPIDs(dir)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("no running devnet in %s (no node-*/snoded.pid)", dir)
	}
	for file, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			os.Remove(file) // stale
			continue
		}
		if progress != nil {
			fmt.Fprintf(progress, "stopping pid %d (%s)\n", pid, file)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for file, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		os.Remove(file)
	}
	// Namespaces of a --netns devnet whose owner died without cleaning up.
	if os.Geteuid() == 0 {
		cleanupNetns(dir)
	}
	return nil
}

func readPIDs(dir string) (map[string]int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "node-*", "snoded.pid"))
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			out[f] = pid
		}
	}
	return out, nil
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// A zombie (exited, not yet reaped by its parent) counts as gone.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func anyAlive(pids map[string]int) bool {
	for _, pid := range pids {
		if alive(pid) {
			return true
		}
	}
	return false
}

// FindSnoded finds the snoded binary next to the running executable, or
// builds it into buildDir with the go tool from the module source.
func FindSnoded(buildDir string) (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "snoded")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return BuildSnoded(buildDir)
}

// BuildSnoded runs `go build ./cmd/snoded` from the module root above the
// working directory.
func BuildSnoded(outDir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("no snoded next to snodectl and %w", err)
	}
	out := filepath.Join(outDir, "snoded")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/snoded")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/snoded: %v\n%s", err, b)
	}
	return out, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/snodebox/snodebox") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the snodebox source tree")
		}
		dir = parent
	}
}

func shortID(dir string) string {
	h := sha256.Sum256([]byte(dir))
	return fmt.Sprintf("%04x", uint16(h[0])<<8|uint16(h[1]))
}

// logTail is the last n lines of a node's log, indented, for an error that
// must be readable after the devnet's directory is gone (a CI run).
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	return "; its last lines:\n\t" + strings.Join(lines, "\n\t")
}
