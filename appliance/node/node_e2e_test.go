package node_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/node/nodetest"
	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// ---- helpers shared with bench_test.go ----

// newClient keeps up to conns keep-alive connections to the node and
// skips verification of its self-signed certificate (as Session clients do).
func newClient(conns int) *rpcclient.Client {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
	}
	return &rpcclient.Client{HTTP: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// signer returns the deterministic test account i: a 05 account whose key
// is an Ed25519 key, verified directly by the node (spec §3.1 step 2).
func signer(t testing.TB, i int) *rpcclient.Signer {
	t.Helper()
	seed := sha256.Sum256([]byte("snodebox e2e account " + strconv.Itoa(i)))
	s, err := rpcclient.NewEd25519(0x05, seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// payload is the deterministic 1 KiB message client c stores as its i-th.
func payload(c, i int) []byte {
	d := make([]byte, 1024)
	n := copy(d, fmt.Sprintf("client %d message %d|", c, i))
	for j := n; j+8 <= len(d); j += 8 {
		binary.BigEndian.PutUint64(d[j:], uint64(c)<<40^uint64(i)<<8^uint64(j))
	}
	return d
}

type storeAnswer struct {
	Hash string `json:"hash"`
}

// store sends an unsigned namespace-0 store (public inbox: no auth needed)
// and returns the HTTP status and the hash the node answered.
func store(ctx context.Context, cl *rpcclient.Client, url string, s *rpcclient.Signer, data []byte) (int, string, error) {
	now := time.Now().UnixMilli()
	status, body, err := cl.Do(ctx, url, "store", rpcclient.StoreUnsigned(s.Pubkey(),
		rpcclient.StoreArgs{Data: data, Timestamp: now, TTL: 24 * 3600 * 1000}))
	if err != nil || status != http.StatusOK {
		return status, "", err
	}
	var a storeAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return status, "", fmt.Errorf("store answer %q: %w", body, err)
	}
	return status, a.Hash, nil
}

type retrieveAnswer struct {
	Messages []struct {
		Hash       string `json:"hash"`
		Timestamp  int64  `json:"timestamp"`
		Expiration int64  `json:"expiration"`
		Data       string `json:"data"`
	} `json:"messages"`
	More bool `json:"more"`
}

// retrieve is a signed namespace-0 retrieve ("retrieve" || timestamp).
func retrieve(ctx context.Context, cl *rpcclient.Client, url string, s *rpcclient.Signer, lastHash string, maxCount int) (retrieveAnswer, error) {
	var a retrieveAnswer
	status, body, err := cl.Do(ctx, url, "retrieve", s.Retrieve(rpcclient.RetrieveArgs{
		LastHash: lastHash, MaxCount: maxCount, Timestamp: time.Now().UnixMilli()}))
	if err != nil {
		return a, err
	}
	if status != http.StatusOK {
		return a, fmt.Errorf("retrieve: status %d: %s", status, body)
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return a, fmt.Errorf("retrieve answer: %w", err)
	}
	return a, nil
}

// retrieveAll pages through an account's namespace 0 with last_hash.
func retrieveAll(ctx context.Context, cl *rpcclient.Client, url string, s *rpcclient.Signer) (map[string][]byte, error) {
	out := map[string][]byte{}
	last := ""
	for {
		a, err := retrieve(ctx, cl, url, s, last, 500)
		if err != nil {
			return nil, err
		}
		for _, m := range a.Messages {
			d, err := base64.StdEncoding.DecodeString(m.Data)
			if err != nil {
				return nil, fmt.Errorf("message %s data: %w", m.Hash, err)
			}
			out[m.Hash] = d
			last = m.Hash
		}
		if !a.More || len(a.Messages) == 0 {
			return out, nil
		}
	}
}

// waitReady polls the node's info method until it answers. The deadline
// only guards against a hung node; it asserts nothing about speed.
func waitReady(t testing.TB, cl *rpcclient.Client, url string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		status, _, err := cl.Do(ctx, url, "info", rpcclient.Info())
		cancel()
		if err == nil && status == http.StatusOK {
			return
		}
		select {
		case <-exited:
			t.Fatalf("node exited before answering (last: %d %v)", status, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("node at %s never answered info: %d %v", url, status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// buildSnoded compiles cmd/snoded into dir.
func buildSnoded(t testing.TB, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "snoded")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/snodebox/snodebox/cmd/snoded")
	// Static, as the image's snoded is built: no libc mapped into the
	// process whose memory the benchmarks report.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build snoded: %v\n%s", err, out)
	}
	return bin
}

// snoded is a running `snoded run` child process.
type snoded struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *bytes.Buffer
}

func startSnoded(t testing.TB, bin, data, listen, status string, env ...string) *snoded {
	t.Helper()
	return startSnodedWith(t, bin, data, listen, status, nil, env...)
}

// startSnodedWith is startSnoded with more flags for `snoded run`.
func startSnodedWith(t testing.TB, bin, data, listen, status string, flags []string, env ...string) *snoded {
	t.Helper()
	var log bytes.Buffer
	args := append([]string{"run", "--data", data, "--listen", listen, "--status", status, "--no-rate-limit", "--log-level", "warn"}, flags...)
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = &log
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start snoded: %v", err)
	}
	p := &snoded{cmd: cmd, exited: make(chan struct{}), log: &log}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// ---- the test ----

// A node killed with SIGKILL while it answers concurrent HTTPS stores keeps
// every store it answered 200: after a restart each one is retrieved with
// its data (spec §4.1: the answer is the durability promise).
func TestE2EKillDuringStoresKeepsAnsweredStores(t *testing.T) {
	dir := t.TempDir()
	bin := buildSnoded(t, dir)
	data := filepath.Join(dir, "data")
	listen, status := nodetest.FreeAddr(t), nodetest.FreeAddr(t)
	url := "https://" + listen

	const clients, accounts = 32, 8
	cl := newClient(clients)
	signers := make([]*rpcclient.Signer, accounts)
	for i := range signers {
		signers[i] = signer(t, i)
	}

	type ack struct {
		acct int
		hash string
		data []byte
	}
	var mu sync.Mutex
	var acks []ack
	for round := range 2 {
		node := startSnoded(t, bin, data, listen, status)
		waitReady(t, cl, url, node.exited)

		killAt := 400 + 300*round
		killed := make(chan struct{})
		var once sync.Once
		var wg sync.WaitGroup
		ctx, cancel := context.WithCancel(context.Background())
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					s := signers[c%accounts]
					d := payload(round*1000+c, i)
					code, hash, err := store(ctx, cl, url, s, d)
					if err != nil || code != http.StatusOK {
						// The node is gone (or going): stop; this store was not acknowledged.
						select {
						case <-killed:
							return
						default:
						}
						t.Errorf("client %d: store before the kill failed: %d %v\n%s", c, code, err, node.log)
						return
					}
					if want := storage.MessageHash(s.Account, 0, d); hash != want {
						t.Errorf("node answered hash %s, want %s", hash, want)
					}
					mu.Lock()
					acks = append(acks, ack{c % accounts, hash, d})
					n := len(acks)
					mu.Unlock()
					if n >= killAt {
						once.Do(func() {
							close(killed)
							node.cmd.Process.Signal(syscall.SIGKILL)
						})
					}
				}
			}()
		}
		wg.Wait()
		cancel()
		<-node.exited
		t.Logf("round %d: SIGKILLed snoded after %d acknowledged stores in total", round, len(acks))
	}

	// Restart on the same data and read everything back.
	node := startSnoded(t, bin, data, listen, status)
	waitReady(t, cl, url, node.exited)
	ctx := context.Background()
	stored := make([]map[string][]byte, accounts)
	for i, s := range signers {
		got, err := retrieveAll(ctx, cl, url, s)
		if err != nil {
			t.Fatalf("account %d: %v\n%s", i, err, node.log)
		}
		stored[i] = got
	}
	lost := 0
	for _, a := range acks {
		d, ok := stored[a.acct][a.hash]
		if !ok {
			lost++
			if lost <= 10 {
				t.Errorf("store answered 200 but lost after SIGKILL: account %d hash %s", a.acct, a.hash)
			}
			continue
		}
		if !bytes.Equal(d, a.data) {
			t.Errorf("account %d hash %s: data came back altered", a.acct, a.hash)
		}
	}
	total := 0
	for _, m := range stored {
		total += len(m)
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged stores lost", lost, len(acks))
	}
	t.Logf("all %d acknowledged stores present after 2 SIGKILLs (%d messages stored in total)", len(acks), total)
	if total < len(acks) {
		t.Errorf("node holds %d messages, fewer than %d acknowledged", total, len(acks))
	}
	if err := node.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-node.exited
	if _, err := os.Stat(filepath.Join(data, "messages.db")); err != nil {
		t.Errorf("message database not in the data dir: %v", err)
	}
}
