// Command snoded is the snodebox node. As PID 1 it boots the board and runs
// the node; `snoded run` runs the same node services on a host.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/storage/rpc"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runHosted(os.Args[2:])
	case "version":
		fmt.Println(node.Version)
	case "-h", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "snoded: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "snoded: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: snoded <command> [flags]

commands:
  run      run the node services on this host (hosted mode)
  version  print the version

When started as PID 1 (the init of a snodebox image) snoded boots the device.
`)
}

func runHosted(args []string) error {
	fs := flag.NewFlagSet("snoded run", flag.ContinueOnError)
	var cfg node.Config
	fs.StringVar(&cfg.DataDir, "data", "", "data directory (identity, database); required")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:22021", "HTTPS address for the storage RPC, onion requests and peers")
	fs.StringVar(&cfg.StatusListen, "status", "127.0.0.1:8080", "plain-HTTP status page address (empty: none)")
	fs.StringVar(&cfg.PublicIP, "public-ip", "", "IPv4 address published to the network (default: the listen address)")
	fs.StringVar(&cfg.Registry, "registry", "self", "network registry: self, oxend:URL or devnet:URL")
	fs.BoolVar(&cfg.ServeRegistry, "serve-registry", false, "also serve a devnet registry on the HTTPS listener")
	fs.Int64Var(&cfg.DBCapBytes, "db-cap", 0, "message database size cap in bytes (0: default)")
	noLimit := fs.Bool("no-rate-limit", false, "disable the per-IP rate limit (benchmarks only)")
	fs.BoolVar(&cfg.AllowPrivateProxy, "allow-private-proxy", false, "let onion proxy requests reach private and loopback addresses (devnets)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.DataDir == "" {
		return errors.New("run: --data DIR is required")
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("run: --log-level %q: %w", *level, err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	if *noLimit {
		cfg.RateLimit = rpc.RateLimit{Disabled: true}
	}

	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.Listen(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.StatusListen != "" {
		srv := &http.Server{Addr: cfg.StatusListen, Handler: n.StatusHandler()}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				cfg.Logger.Error("status page", "err", err)
			}
		}()
		defer srv.Close()
	}
	cfg.Logger.Info("snoded running", "https", cfg.Listen, "status", cfg.StatusListen, "data", cfg.DataDir)
	return n.Run(ctx)
}
