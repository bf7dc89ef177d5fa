package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseForwardAcceptsOnlyLoopback(t *testing.T) {
	f, err := ParseForward("127.0.0.1:8080-:80")
	if err != nil || f != (Forward{"127.0.0.1", 8080, 80}) {
		t.Fatalf("ParseForward = %+v, %v", f, err)
	}
	for _, bad := range []string{"0.0.0.0:8080-:80", "192.168.1.2:1-:2", "127.0.0.1:8080", "127.0.0.1:x-:80", "127.0.0.1:80-:70000"} {
		if _, err := ParseForward(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestCmdlineFollowsTheBootContract(t *testing.T) {
	virt := Config{Machine: "virt"}.Cmdline()
	for _, want := range []string{"console=ttyAMA0", "panic=-1", "snode.data=/dev/vda1", "snode.ntp= ", "snode.rpc_port=22021", "snode.status_port=80", "snode.registry=self"} {
		if !strings.Contains(virt+" ", want) {
			t.Errorf("virt cmdline %q lacks %q", virt, want)
		}
	}
	pi := Config{Machine: "raspi3b", Append: "snode.ntp=10.0.2.3"}.Cmdline()
	if !strings.Contains(pi, "snode.watchdog=0") || strings.Contains(virt, "snode.watchdog") {
		t.Errorf("only raspi3b keeps the watchdog closed: virt %q, raspi3b %q", virt, pi)
	}
	if !strings.Contains(pi, "console=ttyS1,115200") || !strings.Contains(pi, "snode.data=/dev/mmcblk0p1") || !strings.HasSuffix(pi, "snode.ntp=10.0.2.3") {
		t.Errorf("raspi3b cmdline %q", pi)
	}
}

func TestArgsRestrictTheNetworkToForwards(t *testing.T) {
	c := Config{Machine: "virt", Kernel: "K", Initrd: "I", Disk: "D", StateDir: "/s",
		Forwards: []Forward{{"127.0.0.1", 22021, 22021}, {"127.0.0.1", 8080, 80}}}
	args, err := c.Args()
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"-M virt", "-cpu cortex-a72", "-m 512", "-no-reboot",
		"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:22021-:22021,hostfwd=tcp:127.0.0.1:8080-:80",
		"virtio-net-pci,netdev=n0,romfile=", "virtio-blk-pci,drive=d0",
		"-qmp unix:/s/qmp.sock,server=on,wait=off",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("args lack %q:\n%s", want, joined)
		}
	}
	if _, err := (Config{Machine: "raspi3b", Kernel: "K", Initrd: "I", Disk: "D", StateDir: "/s"}).Args(); err == nil {
		t.Error("raspi3b without DTB accepted")
	}
	if _, err := (Config{Machine: "virt"}).Args(); err == nil {
		t.Error("missing kernel accepted")
	}
}

func TestWatcherWaitsForMarkersAndNoticesExit(t *testing.T) {
	w := NewWatcher()
	r, pw := net.Pipe()
	go func() {
		w.consume(r, nil)
		w.closed() // as Start does when QEMU exits
	}()
	go func() {
		pw.Write([]byte("[    1.0] kernel noise\nsnodebox: init\nsnodebox: healthy\n"))
		pw.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, i, err := w.WaitFor(ctx, 0, "snodebox: init")
	if err != nil || l.Text != "snodebox: init" || i != 1 {
		t.Fatalf("WaitFor init = %+v %d %v", l, i, err)
	}
	if _, _, err := w.WaitFor(ctx, i+1, "snodebox: healthy"); err != nil {
		t.Fatal(err)
	}
	// After the console closes, waiting for a line that never came fails.
	for !w.isEOF() {
		time.Sleep(time.Millisecond)
	}
	if _, _, err := w.WaitFor(ctx, 0, "snodebox: power off"); !errors.Is(err, ErrConsoleClosed) {
		t.Errorf("after exit: %v, want ErrConsoleClosed", err)
	}
}

func (w *Watcher) isEOF() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines) == 3 && w.eof
}

// A minimal QMP server: greeting, capabilities, then the command.
func TestQMPNegotiatesAndSendsTheCommand(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan []string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
		sc := bufio.NewScanner(c)
		var cmds []string
		for sc.Scan() {
			var req struct{ Execute string }
			json.Unmarshal(sc.Bytes(), &req)
			cmds = append(cmds, req.Execute)
			if req.Execute == "system_powerdown" {
				c.Write([]byte(`{"event": "POWERDOWN"}` + "\n"))
			}
			c.Write([]byte(`{"return": {}}` + "\n"))
			if len(cmds) == 2 {
				break
			}
		}
		got <- cmds
	}()
	if err := QMP(sock, "system_powerdown"); err != nil {
		t.Fatal(err)
	}
	if cmds := <-got; !slices.Equal(cmds, []string{"qmp_capabilities", "system_powerdown"}) {
		t.Errorf("server saw %v", cmds)
	}
}
