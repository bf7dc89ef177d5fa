package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"aead.dev/minisign"
	"golang.org/x/term"

	"github.com/snodebox/snodebox/image/assemble"
	"github.com/snodebox/snodebox/image/release"
)

func init() {
	commands["release"] = releaseCmd
	commands["update"] = updateCmd
}

func releaseUsage() error {
	return errors.New(`usage: snodectl release <keygen|make|serve> [flags]
  keygen --out DIR [--no-password]          a minisign key pair: DIR/snodebox.pub, DIR/snodebox.key
  make --board B --version V --rollback-index N --key SECKEY --out DIR [--snoded BIN]
                                            a signed release: manifest.json(.minisig) and slot.img
  serve --dir DIR --listen 127.0.0.1:PORT   serve release directories over HTTP (Range supported)`)
}

func releaseCmd(args []string) error {
	if len(args) == 0 {
		return releaseUsage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "keygen":
		return releaseKeygen(args[1:])
	case "make":
		return releaseMake(ctx, args[1:])
	case "serve":
		return releaseServe(ctx, args[1:])
	}
	return releaseUsage()
}

// password reads a key password: SNODEBOX_KEY_PASSWORD when set (scripts,
// CI), else from the terminal without echo.
func password(prompt string, confirm bool) (string, error) {
	if pw, ok := os.LookupEnv("SNODEBOX_KEY_PASSWORD"); ok {
		return pw, nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return "", errors.New("the key is password protected: set SNODEBOX_KEY_PASSWORD or run on a terminal")
	}
	fmt.Fprint(os.Stderr, prompt)
	pw, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", err
	}
	if confirm {
		fmt.Fprint(os.Stderr, "again: ")
		again, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return "", err
		}
		if !bytes.Equal(pw, again) {
			return "", errors.New("the passwords differ")
		}
	}
	if len(pw) == 0 {
		return "", errors.New("empty password: use --no-password for a key without one")
	}
	return string(pw), nil
}

func releaseKeygen(args []string) error {
	fs := flag.NewFlagSet("snodectl release keygen", flag.ContinueOnError)
	out := fs.String("out", "", "directory for snodebox.pub and snodebox.key; required")
	noPW := fs.Bool("no-password", false, "leave the secret key unencrypted (test keys, automated signing)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out DIR is required")
	}
	pw := ""
	if !*noPW {
		var err error
		if pw, err = password("password for the new secret key: ", true); err != nil {
			return err
		}
	}
	pub, err := release.Keygen(*out, pw)
	if err != nil {
		return err
	}
	fmt.Printf("%s: public key %s (id %016X)\n%s: secret key%s\n", filepath.Join(*out, release.PublicKeyFile), pub, pub.ID(),
		filepath.Join(*out, release.SecretKeyFile), map[bool]string{true: " (no password)", false: " (password protected)"}[*noPW])
	return nil
}

func loadKey(path string) (minisign.PrivateKey, error) {
	return release.LoadSecretKey(path, func() (string, error) { return password("password for "+path+": ", false) })
}

// keyFiles collects repeatable --release-key/--admin-key flags.
type keyFiles []string

func (k *keyFiles) String() string     { return strings.Join(*k, ",") }
func (k *keyFiles) Set(v string) error { *k = append(*k, v); return nil }

// read returns the concatenated key files (nil when none), each checked.
func (k keyFiles) read() ([]byte, error) {
	if len(k) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	for _, p := range k {
		keys, err := release.ReadPublicKeys(p)
		if err != nil {
			return nil, err
		}
		b.Write(release.KeysText(keys))
	}
	return b.Bytes(), nil
}

// readKeyFlags reads the --release-key and --admin-key files.
func readKeyFlags(rel, admin keyFiles) (rk, ak []byte, err error) {
	if rk, err = rel.read(); err != nil {
		return nil, nil, err
	}
	if ak, err = admin.read(); err != nil {
		return nil, nil, err
	}
	return rk, ak, nil
}

func releaseMake(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snodectl release make", flag.ContinueOnError)
	board := fs.String("board", "qemu-arm64", "board: qemu-arm64, rpi3, rpi4")
	version := fs.String("version", "", "release version; required")
	index := fs.Uint64("rollback-index", 0, "monotonic rollback index: nodes refuse a release below the one they run; required")
	keyPath := fs.String("key", "", "secret key from release keygen; required")
	out := fs.String("out", "", "release directory; required")
	snoded := fs.String("snoded", "", "prebuilt static arm64 snoded (default: build it)")
	slotArgs := fs.String("slot-bootargs", "", "extra kernel arguments for this system (slot.env)")
	repo := fs.String("repo", "", "repository root")
	var relKeys, adminKeys keyFiles
	fs.Var(&relKeys, "release-key", "another public key the new system trusts for releases (repeatable; the signing key is always trusted)")
	fs.Var(&adminKeys, "admin-key", "public key the new system accepts pushes from (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version == "" || *keyPath == "" || *out == "" || !flagSet(fs, "rollback-index") {
		return errors.New("--version, --rollback-index, --key and --out are required")
	}
	key, err := loadKey(*keyPath)
	if err != nil {
		return err
	}
	rk, ak, err := readKeyFlags(relKeys, adminKeys)
	if err != nil {
		return err
	}
	b, err := newBuilder(*repo)
	if err != nil {
		return err
	}
	b.Version = *version
	m, err := b.Release(ctx, assemble.ReleaseOptions{Board: *board, RollbackIndex: *index, Snoded: *snoded, Key: key, ReleaseKeys: rk, AdminKeys: ak, SlotBootArgs: *slotArgs, Out: *out})
	if err != nil {
		return err
	}
	p := m.SlotPayload()
	fmt.Printf("%s: %s for %s, rollback index %d, %s %d bytes sha256 %s; check with: minisign -Vm %s -P %s\n",
		*out, m.Version, m.Board, m.RollbackIndex, p.Name, p.Size, p.SHA256,
		filepath.Join(*out, release.ManifestFile), release.KeyLine(release.PublicOf(key)))
	return nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func releaseServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snodectl release serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to serve (a release directory, or one holding several); required")
	listen := fs.String("listen", "127.0.0.1:8088", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir DIR is required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fileSrv := http.FileServer(http.Dir(*dir))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Info("release serve", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "range", r.Header.Get("Range"))
		fileSrv.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "release serve: %s on http://%s/\n", *dir, ln.Addr())
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func updateCmd(args []string) error {
	if len(args) == 0 || args[0] != "push" {
		return errors.New("usage: snodectl update push --node https://IP:22021 --release DIR --admin-key SECKEY")
	}
	fs := flag.NewFlagSet("snodectl update push", flag.ContinueOnError)
	node := fs.String("node", "", "the node's HTTPS address, https://IP:22021; required")
	dir := fs.String("release", "", "release directory (release make); required")
	keyPath := fs.String("admin-key", "", "admin secret key whose public half the node trusts; required")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *node == "" || *dir == "" || *keyPath == "" {
		return errors.New("--node, --release and --admin-key are required")
	}
	key, err := loadKey(*keyPath)
	if err != nil {
		return err
	}
	man, err := os.ReadFile(filepath.Join(*dir, release.ManifestFile))
	if err != nil {
		return err
	}
	m, err := release.ParseManifest(man)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	fmt.Fprintf(os.Stderr, "update push: %s version %s (%d MB) to %s\n", m.Board, m.Version, m.SlotPayload().Size/1e6, *node)
	code, answer, err := release.PushTo(ctx, *node, *dir, key)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s refused the update (%d %s): %s", *node, code, http.StatusText(code), answer)
	}
	fmt.Println(answer)
	return nil
}
