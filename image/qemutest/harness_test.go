package qemutest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snodebox/snodebox/appliance/node/nodetest"
	"github.com/snodebox/snodebox/image/assemble"
	"github.com/snodebox/snodebox/image/disk"
	"github.com/snodebox/snodebox/image/mbr"
	"github.com/snodebox/snodebox/image/qemu"
	"github.com/snodebox/snodebox/storage/rpcclient"
)

// Failure guards, not speed assertions: TCG on two shared cores is slow
// and its speed varies; these only stop a hung guest from hanging the suite.
const (
	guardMarker   = 3 * time.Minute
	guardHealthy  = 5 * time.Minute
	guardPowerOff = 2 * time.Minute
)

// Host tools the image build and boots need; a missing one is a failure
// with the package to install, never a skip.
var hostTools = map[string]string{
	"qemu-system-aarch64": "qemu-system-arm",
	"apt-get":             "apt",
	"dpkg-deb":            "dpkg",
	"depmod":              "kmod",
	"fdtput":              "device-tree-compiler",
	"fdtget":              "device-tree-compiler",
}

type env struct {
	repo   string
	b      *assemble.Builder
	snoded string
	files  map[string]assemble.BootFiles
	mu     sync.Mutex
}

var (
	envOnce sync.Once
	envVal  *env
	envErr  error
)

func lookTool(name string) bool {
	if _, err := exec.LookPath(name); err == nil {
		return true
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return true
		}
	}
	return false
}

// setup finds the repository, checks host tools and builds the arm64
// snoded once for every boot of this run.
func setup(tb testing.TB) *env {
	tb.Helper()
	envOnce.Do(func() {
		var missing []string
		for tool, pkg := range hostTools {
			if !lookTool(tool) {
				missing = append(missing, fmt.Sprintf("%s (Debian package %s)", tool, pkg))
			}
		}
		if len(missing) > 0 {
			envErr = fmt.Errorf("host tools missing: %s; run `make deps`", strings.Join(missing, ", "))
			return
		}
		repo, err := assemble.FindRepo("")
		if err != nil {
			envErr = err
			return
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		e := &env{repo: repo, b: assemble.New(repo, log, os.Stderr), files: map[string]assemble.BootFiles{}}
		if e.snoded, err = e.b.Snoded(context.Background()); err != nil {
			envErr = err
			return
		}
		envVal = e
	})
	if envErr != nil {
		tb.Fatalf("qemu test setup: %v", envErr)
	}
	return envVal
}

// bootFiles builds the kernel, initramfs and DTB for a machine once.
func (e *env) bootFiles(tb testing.TB, machine string) assemble.BootFiles {
	tb.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if bf, ok := e.files[machine]; ok {
		return bf
	}
	dir := filepath.Join(e.repo, "build", "qemutest", machine, "boot")
	bf, err := e.b.ForQEMU(context.Background(), machine, e.snoded, dir)
	if err != nil {
		tb.Fatalf("build boot files for %s: %v", machine, err)
	}
	e.files[machine] = bf
	return bf
}

// freshState returns an empty state directory for a machine under build/.
func (e *env) freshState(tb testing.TB, name string) string {
	tb.Helper()
	return e.scratch(tb, filepath.Join(name, "state"))
}

// scratch returns an empty directory build/qemutest/name for one test's
// outputs. A test that passes leaves nothing in it: cards are up to
// 512 MiB each (sparse, still 75-110 MiB of data), and a CI machine's disk
// is not ours to fill. A failing test keeps its disks, images and console
// logs to look at.
func (e *env) scratch(tb testing.TB, name string) string {
	tb.Helper()
	dir := filepath.Join(e.repo, "build", "qemutest", name)
	if err := os.RemoveAll(dir); err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if !tb.Failed() {
			os.RemoveAll(dir)
		}
	})
	return dir
}

// boot is one running guest with its forwarded ports.
type boot struct {
	tb         testing.TB
	m          *qemu.Machine
	rpcPort    int
	statusPort int
	console    *os.File
	name       string
	disk       string // image boots: the kept card
	// waitLast's last answer
	lastResult, lastReason string
}

// start boots a machine with the data disk in state and forwards the RPC
// (guest 22021) and status page (guest 80) to free loopback ports.
func (e *env) start(tb testing.TB, machine, state string, bf assemble.BootFiles, name, appendArgs string) *boot {
	tb.Helper()
	bt := &boot{tb: tb, rpcPort: nodetest.FreePort(tb), statusPort: nodetest.FreePort(tb), name: name}
	cf, err := os.Create(filepath.Join(state, name+"-console.log"))
	if err != nil {
		tb.Fatal(err)
	}
	bt.console = cf
	bt.m, err = qemu.Start(context.Background(), qemu.Config{
		Machine: machine, Kernel: bf.Kernel, Initrd: bf.Initrd, DTB: bf.DTB,
		Disk: filepath.Join(state, "data.img"), StateDir: state,
		Forwards: []qemu.Forward{
			{HostAddr: "127.0.0.1", HostPort: bt.rpcPort, GuestPort: 22021},
			{HostAddr: "127.0.0.1", HostPort: bt.statusPort, GuestPort: 80},
		},
		Append:  appendArgs,
		Console: cf,
	})
	if err != nil {
		tb.Fatalf("start %s: %v", machine, err)
	}
	tb.Cleanup(func() {
		bt.m.Kill()
		<-bt.m.Done()
		cf.Close()
	})
	return bt
}

// fail reports err with the tail of the console, where the reason usually is.
func (bt *boot) fail(format string, a ...any) {
	bt.tb.Helper()
	lines := bt.m.Console.Lines()
	start := max(0, len(lines)-60)
	var b strings.Builder
	for _, l := range lines[start:] {
		fmt.Fprintf(&b, "  [%6.1fs] %s\n", l.At.Seconds(), l.Text)
	}
	bt.tb.Fatalf("%s: %s\nconsole tail (full log in %s):\n%s", bt.name, fmt.Sprintf(format, a...), bt.console.Name(), b.String())
}

// expect waits for a console line containing marker and returns it.
func (bt *boot) expect(guard time.Duration, marker string) qemu.Line {
	bt.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	l, _, err := bt.m.Console.WaitFor(ctx, 0, marker)
	if err != nil {
		bt.fail("%v", err)
	}
	bt.tb.Logf("%s: [%.1fs] %s", bt.name, l.At.Seconds(), l.Text)
	return l
}

func (bt *boot) rpcURL() string { return fmt.Sprintf("https://127.0.0.1:%d", bt.rpcPort) }

// rpc calls the storage RPC through the forwarded port, retrying while the
// forward's guest side is not yet listening.
func (bt *boot) rpc(method string, params any) []byte {
	bt.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guardMarker)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		code, body, err := rpcclient.Do(ctx, bt.rpcURL(), method, params)
		if err == nil && code == http.StatusOK {
			return body
		}
		if err == nil {
			last = fmt.Errorf("status %d: %s", code, body)
		} else {
			last = err
		}
		time.Sleep(time.Second)
	}
	bt.fail("storage rpc %s: %v", method, last)
	return nil
}

// Status is the part of /status.json these tests read.
type Status struct {
	Healthy bool     `json:"healthy"`
	Reasons []string `json:"reasons"`
	LED     string   `json:"led"`
	Board   struct {
		Name string `json:"name"`
	} `json:"board"`
	Disk struct {
		Mount      string `json:"mount"`
		TotalBytes uint64 `json:"total_bytes"`
	} `json:"disk"`
	Memory struct {
		RSSBytes uint64 `json:"rss_bytes"`
	} `json:"memory"`
	Messages int64 `json:"messages"`
}

func (bt *boot) status() (Status, []byte) {
	bt.tb.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/status.json", bt.statusPort)
	deadline := time.Now().Add(guardMarker)
	var last error
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				var s Status
				if err := json.Unmarshal(body, &s); err != nil {
					bt.fail("status.json: %v: %s", err, body)
				}
				return s, body
			}
			last = fmt.Errorf("status %d: %s", resp.StatusCode, body)
		} else {
			last = err
		}
		time.Sleep(time.Second)
	}
	bt.fail("GET %s: %v", url, last)
	return Status{}, nil
}

// powerOff presses the virt machine's power key through QMP and waits for
// the guest's marker and QEMU's exit.
func (bt *boot) powerOff() {
	bt.tb.Helper()
	if err := bt.m.PowerDown(); err != nil {
		bt.fail("qmp system_powerdown: %v", err)
	}
	bt.expect(guardPowerOff, "snodebox: power off")
	select {
	case <-bt.m.Done():
	case <-time.After(guardPowerOff):
		bt.fail("qemu still running %s after the guest said power off", guardPowerOff)
	}
	if err := bt.m.Wait(); err != nil {
		bt.fail("qemu exit: %v", err)
	}
}

// message is what the tests store and later retrieve.
type message struct {
	data []byte
	b64  string
}

func newMessage(tb testing.TB) message {
	d := make([]byte, 48)
	rand.Read(d)
	return message{data: d, b64: base64.StdEncoding.EncodeToString(d)}
}

func checkMBRFresh(tb testing.TB, path string, size int64) {
	tb.Helper()
	ps, err := mbr.Read(path)
	if err != nil {
		tb.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Type != mbr.TypeLinux || ps[0].StartLBA != disk.StartLBA {
		tb.Fatalf("new data disk: partitions %+v, want one 0x83 at LBA 2048", ps)
	}
	if end := int64(ps[0].StartLBA)*mbr.SectorSize + ps[0].Bytes(); end >= size {
		tb.Fatalf("new data disk: partition ends at %d, want it smaller than the %d-byte disk", end, size)
	}
}

// checkMBRFills asserts the partition now reaches (within 1 MiB alignment)
// the end of the disk file.
func checkMBRFills(tb testing.TB, path string) {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	ps, err := mbr.Read(path)
	if err != nil {
		tb.Fatal(err)
	}
	if len(ps) != 1 || ps[0].StartLBA != disk.StartLBA {
		tb.Fatalf("data disk partitions %+v, want one at LBA 2048", ps)
	}
	end := int64(ps[0].StartLBA)*mbr.SectorSize + ps[0].Bytes()
	if end > fi.Size() || fi.Size()-end > 1<<20 {
		tb.Fatalf("data partition ends at %d, disk is %d bytes: not grown to fill it", end, fi.Size())
	}
}

// newAccount is a fresh random Session account.
func newAccount(tb testing.TB) *rpcclient.Signer {
	tb.Helper()
	seed := make([]byte, 32)
	rand.Read(seed)
	s, err := rpcclient.NewSession(seed)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
