// Command snoded is the snodebox node. As PID 1 it boots the board and runs
// the node; `snoded run` runs the same node services on a host.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/snodebox/snodebox/appliance"
	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/storage/rpc"
)

// The node serves no heap profiles, so it keeps no allocation samples:
// their bucket table was 1.5 MiB of a 24 MiB soft limit, which the
// collector then had to make up for by running more often. Set at package
// initialisation, before the allocations it would sample.
var _ = func() int { runtime.MemProfileRate = 0; return 0 }()

func main() {
	if os.Getpid() == 1 {
		appliance.Boot() // never returns
	}
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
	var cfg appliance.HostedConfig
	nc := &cfg.Node
	fs.StringVar(&nc.DataDir, "data", "", "data directory (identity, database); required")
	fs.StringVar(&nc.Listen, "listen", "127.0.0.1:22021", "HTTPS address for the storage RPC, onion requests and peers")
	fs.StringVar(&nc.OMQListen, "omq-listen", "", "also serve peers over OxenMQ (CURVE) on this address, e.g. 0.0.0.0:22020; peers with an OMQ port are then called over it")
	fs.StringVar(&nc.StatusListen, "status", "127.0.0.1:8080", "plain-HTTP status page address (empty: none)")
	fs.StringVar(&nc.PublicIP, "public-ip", "", "IPv4 address published to the network (default: the listen address)")
	fs.StringVar(&nc.Registry, "registry", "self", "network registry: self, oxend:URL (JSON-RPC), oxend-omq:ipc:///path/oxend.sock or oxend-omq:curve://IP:PORT/X25519HEX (keys, list and pings from oxend over OxenMQ), devnet:URL")
	fs.BoolVar(&nc.ServeRegistry, "serve-registry", false, "also serve a devnet registry on the HTTPS listener")
	fs.Int64Var(&nc.DBCapBytes, "db-cap", 0, "message database size cap in bytes (0: default)")
	noLimit := fs.Bool("no-rate-limit", false, "disable the per-IP rate limit (benchmarks only)")
	fs.BoolVar(&nc.AllowPrivateProxy, "allow-private-proxy", false, "let onion proxy requests reach private and loopback addresses (devnets)")
	fs.StringVar(&cfg.ConfigFile, "config", "", "snodebox.toml to validate and show on the status page (optional)")
	fs.BoolVar(&cfg.StatusLANOnly, "status-lan-only", false, "refuse status page clients outside private and loopback ranges")
	fs.BoolVar(&cfg.Profiling, "pprof", false, "serve CPU profiles to this host on the status address: go tool pprof http://STATUS/debug/pprof/profile?seconds=N")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if nc.DataDir == "" {
		return errors.New("run: --data DIR is required")
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("run: --log-level %q: %w", *level, err)
	}
	if *noLimit {
		nc.RateLimit = rpc.RateLimit{Disabled: true}
	}
	return appliance.RunHosted(cfg)
}
