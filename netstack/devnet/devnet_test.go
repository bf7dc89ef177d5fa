package devnet

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/status"
	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

var snodedBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "snodebox-devnet-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	snodedBin, err = BuildSnoded(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build snoded:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeBase finds n consecutive free loopback ports.
func freeBase(t testing.TB, n int) int {
	t.Helper()
	// Below the kernel's ephemeral range: a port the check finds free can
	// otherwise become the local end of some test's outgoing connection
	// before the node meant to listen on it starts (nodes are added late).
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				lo = v
			}
		}
	}
	span := max(lo-n-10000, 1000)
	for try := 0; try < 50; try++ {
		base := 10000 + rand.IntN(span)
		ok := true
		var ls []net.Listener
		for p := base; p < base+n; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// user is one Session account talking to the devnet.
type user struct {
	s *rpcclient.Signer
}

func newUser(t testing.TB, i int) user {
	seed := sha256.Sum256([]byte("devnet-user-" + strconv.Itoa(i)))
	s, err := rpcclient.NewSession(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return user{s}
}

type stored struct {
	u    user
	hash string
}

var client = rpcclient.New()

func call(ctx context.Context, url, method string, params any) (int, map[string]any, error) {
	status, body, err := client.Do(ctx, url, method, params)
	if err != nil {
		return 0, nil, err
	}
	var out map[string]any
	json.Unmarshal(body, &out)
	if out == nil {
		out = map[string]any{"text": string(body)}
	}
	return status, out, nil
}

// store sends one message through entry and checks every other member
// acknowledged it.
func store(ctx context.Context, t testing.TB, entry string, u user, i int) (stored, error) {
	data := []byte(fmt.Sprintf("message %d for %s", i, u.s.Pubkey()[:8]))
	now := time.Now().UnixMilli()
	status, out, err := call(ctx, entry, "store", u.s.Store(rpcclient.StoreArgs{Data: data, Timestamp: now, TTL: 3600_000}))
	if err != nil {
		return stored{}, err
	}
	if status != 200 {
		return stored{}, fmt.Errorf("store via %s: HTTP %d %v", entry, status, out)
	}
	return stored{u, storage.MessageHash(u.s.Account, 0, data)}, nil
}

func retrieve(ctx context.Context, url string, u user) (int, map[string]bool, error) {
	status, out, err := call(ctx, url, "retrieve", u.s.Retrieve(rpcclient.RetrieveArgs{Timestamp: time.Now().UnixMilli()}))
	if err != nil || status != 200 {
		return status, nil, err
	}
	got := map[string]bool{}
	msgs, _ := out["messages"].([]any)
	for _, m := range msgs {
		if mm, ok := m.(map[string]any); ok {
			h, _ := mm["hash"].(string)
			got[h] = true
		}
	}
	return status, got, nil
}

// settle retries check until it passes: replication, expiry of dead nodes
// and handovers are asynchronous. The bound only stops a broken network
// from hanging the test; it measures nothing.
func settle(t *testing.T, what string, check func() error) {
	t.Helper()
	var err error
	for i := 0; i < 240; i++ {
		if err = check(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

type swarmView struct {
	id      string
	members []string // https URLs
}

func swarmOf(ctx context.Context, url string, u user) (swarmView, error) {
	status, out, err := call(ctx, url, "get_swarm", rpcclient.GetSwarm(u.s.Pubkey()))
	if err != nil {
		return swarmView{}, err
	}
	if status != 200 {
		return swarmView{}, fmt.Errorf("get_swarm: HTTP %d", status)
	}
	v := swarmView{id: fmt.Sprint(out["swarm"])}
	snodes, _ := out["snodes"].([]any)
	for _, s := range snodes {
		m, _ := s.(map[string]any)
		v.members = append(v.members, fmt.Sprintf("https://%v:%v", m["ip"], m["port_https"]))
	}
	return v, nil
}

func TestDevnetLoopback(t *testing.T) {
	base := freeBase(t, 40)
	runScenario(t, Options{BasePort: base, Profiling: true})
}

// The same scenario with every peer call over OxenMQ (CURVE), as upstream
// storage servers talk.
func TestDevnetLoopbackOMQ(t *testing.T) {
	base := freeBase(t, OMQPortOffset+40)
	runScenario(t, Options{BasePort: base, Transport: "omq"})
}

func TestDevnetNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root; run the tests as root to cover --netns")
	}
	runScenario(t, Options{Netns: true})
}

func runScenario(t *testing.T, opts Options) {
	ctx := context.Background()
	opts.Nodes = 7
	opts.Dir = filepath.Join(t.TempDir(), "devnet")
	opts.Snoded = snodedBin
	opts.LogLevel = "warn"
	d, err := Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("stop devnet: %v", err)
		}
	})
	nodes, _, err := d.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(opts.Dir, "nodes.json")); err != nil {
		t.Fatal("nodes.json not written")
	}
	url := func(i int) string { return nodes[i].HTTPS }

	// Each node stands in for a board: it gets its share of the cores.
	if os.Getenv("GOMAXPROCS") == "" {
		want := "GOMAXPROCS=" + strconv.Itoa(max(1, runtime.NumCPU()/opts.Nodes))
		for i, n := range nodes {
			env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", n.PID))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(strings.Split(string(env), "\x00"), want) {
				t.Errorf("node %d runs without %s", i, want)
			}
		}
	}
	// --pprof reaches the nodes: a profile where asked, none otherwise.
	if !opts.Netns {
		want := http.StatusNotFound
		if opts.Profiling {
			want = http.StatusOK
		}
		resp, err := http.Get(nodes[1].Status + status.ProfilePath + "?seconds=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("profile of node 1 with Profiling=%v: HTTP %d, want %d", opts.Profiling, resp.StatusCode, want)
		}
	}

	// Store through one member, retrieve from every other member.
	var msgs []stored
	for i := range 12 {
		m, err := store(ctx, t, url(i%3), newUser(t, i), i)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	for _, m := range msgs {
		for i := range nodes {
			status, got, err := retrieve(ctx, url(i), m.u)
			if err != nil || status != 200 || !got[m.hash] {
				t.Fatalf("message stored via one member missing on node %d: HTTP %d err %v", i, status, err)
			}
		}
	}

	// Delete and expire reach every member.
	del, exp := msgs[0], msgs[1]
	if status, out, err := call(ctx, url(4), "delete", del.u.s.Delete([]string{del.hash}, false)); err != nil || status != 200 {
		t.Fatalf("delete: HTTP %d %v %v", status, out, err)
	}
	newExpiry := time.Now().Add(10 * time.Minute).UnixMilli()
	if status, out, err := call(ctx, url(5), "expire", exp.u.s.Expire([]string{exp.hash}, newExpiry, rpcclient.ExpireShorten)); err != nil || status != 200 {
		t.Fatalf("expire: HTTP %d %v %v", status, out, err)
	}
	for i := range nodes {
		if _, got, _ := retrieve(ctx, url(i), del.u); got[del.hash] {
			t.Fatalf("deleted message still on node %d", i)
		}
		status, out, err := call(ctx, url(i), "get_expiries", exp.u.s.GetExpiries([]string{exp.hash}, time.Now().UnixMilli()))
		e, _ := out["expiries"].(map[string]any)
		if err != nil || status != 200 || e[exp.hash] != float64(newExpiry) {
			t.Fatalf("node %d: expiry after expire = %v (HTTP %d), want %d", i, e[exp.hash], status, newExpiry)
		}
	}
	msgs = msgs[1:]

	// Kill a node mid-traffic: every acknowledged message stays
	// retrievable from the rest.
	victim := 6
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				u := newUser(t, 1000+w*1000+i%50)
				m, err := store(ctx, t, url(w), u, 100000+w*100000+i)
				if err == nil {
					mu.Lock()
					msgs = append(msgs, m)
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	if err := d.Kill(victim); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d messages acknowledged around the kill", len(msgs))
	for _, m := range msgs {
		for i := range nodes {
			if i == victim {
				continue
			}
			if _, got, _ := retrieve(ctx, url(i), m.u); !got[m.hash] {
				t.Fatalf("acknowledged message %s missing on node %d after node %d was killed", m.hash, i, victim)
			}
		}
	}

	// The killed node comes back and catches up on what it missed (queued
	// forwards and the dumps it asks for on start).
	if err := d.Restart(ctx, victim); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		settle(t, "restarted node catches up", func() error {
			_, got, err := retrieve(ctx, url(victim), m.u)
			if err != nil || !got[m.hash] {
				return fmt.Errorf("message %s missing on the restarted node (err %v)", m.hash, err)
			}
			return nil
		})
	}

	// Add nodes until a new swarm forms; messages that now map to it are
	// retrievable from its members, and other nodes answer 421.
	for len(swarmIDs(t, d)) < 2 {
		if _, err := d.Add(ctx); err != nil {
			t.Fatal(err)
		}
	}
	nodes, _, _ = d.Nodes(ctx)
	t.Logf("%d live nodes in %d swarms", len(nodes), len(swarmIDs(t, d)))
	live := map[string]bool{}
	for _, n := range nodes {
		live[n.HTTPS] = true
	}
	moved := 0
	for _, m := range msgs {
		var sv swarmView
		settle(t, "get_swarm", func() (err error) { sv, err = swarmOf(ctx, nodes[0].HTTPS, m.u); return err })
		inSwarm := map[string]bool{}
		for _, member := range sv.members {
			inSwarm[member] = true
			settle(t, "message on its swarm's member "+member, func() error {
				_, got, err := retrieve(ctx, member, m.u)
				if err != nil || !got[m.hash] {
					return fmt.Errorf("missing (err %v)", err)
				}
				return nil
			})
		}
		if len(sv.members) == 0 {
			t.Fatal("get_swarm named no members")
		}
		if !inSwarm[url(0)] {
			moved++
		}
		for u := range live {
			if inSwarm[u] {
				continue
			}
			settle(t, "421 from a node outside the swarm", func() error {
				status, _, err := retrieve(ctx, u, m.u)
				if err != nil || status != 421 {
					return fmt.Errorf("HTTP %d err %v", status, err)
				}
				return nil
			})
		}
	}
	t.Logf("%d of %d messages now live in a swarm node 0 is not in", moved, len(msgs))
}

func swarmIDs(t *testing.T, d *Devnet) map[string]bool {
	nodes, _, err := d.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, n := range nodes {
		ids[n.SwarmID] = true
	}
	return ids
}
