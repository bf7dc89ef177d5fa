package msgstore

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/snodebox/snodebox/storage/storetest"
)

// mappedKB sums the resident kB of this process's mappings of inode ino
// (from /proc/self/smaps).
func mappedKB(t *testing.T, ino uint64) int {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kb, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[4] == strconv.FormatUint(ino, 10)
			continue
		}
		if in && len(fields) >= 2 && fields[0] == "Rss:" {
			n, _ := strconv.Atoi(fields[1])
			kb += n
		}
	}
	return kb
}

// Pruning hands the database's clean mapped pages back: afterwards none of
// the file is resident in this process, and every message still reads back.
func TestPruneTrimsMappedPages(t *testing.T) {
	s := openTemp(t, Options{})
	defer s.Close()
	a := storetest.Account(1)
	for i := range 400 {
		data := fmt.Sprintf("%d %0900d", i, i)
		if _, _, err := s.Store(bg, storetest.Msg(a, 0, data, 1, 9e12)); err != nil {
			t.Fatal(err)
		}
	}
	read := func() int {
		ms, _, err := s.Retrieve(bg, a, 0, "", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(ms)
	}
	if n := read(); n != 400 {
		t.Fatalf("read %d messages", n)
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		t.Fatal(err)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	before := mappedKB(t, ino)
	if before == 0 {
		t.Fatal("reading 400 messages left no database page resident; the check below would prove nothing")
	}
	if _, err := s.Prune(bg, 1); err != nil {
		t.Fatal(err)
	}
	if after := mappedKB(t, ino); after != 0 {
		t.Errorf("%d kB of the database still resident after prune (was %d kB)", after, before)
	}
	if n := read(); n != 400 {
		t.Errorf("after trim: read %d messages, want 400", n)
	}
	t.Logf("database pages resident: %d kB before prune, 0 after", before)
}

func TestParseMappingsOnlyTheSharedReadOnlyDatabaseMapping(t *testing.T) {
	const maps = `00400000-00c00000 r-xp 00000000 00:02 4242 /init
00c00000-00d00000 rw-p 00800000 00:02 4242 /init
7f0000000000-7f0040000000 r--s 00000000 fe:01 4242 /data/messages.db
7f0040000000-7f0040001000 rw-s 00000000 fe:01 4242 /data/messages.db
7f0050000000-7f0050001000 r--s 00000000 fe:02 4242 /other/file
7f0060000000-7f0060001000 r--s 00000000 fe:01 4243 /data/other.db
`
	dev := unix.Mkdev(0xfe, 0x01)
	got, err := parseMappings(strings.NewReader(maps), dev, 4242)
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]uintptr{{0x7f0000000000, 0x7f0040000000}}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("mappings = %x, want only %x", got, want)
	}
}
