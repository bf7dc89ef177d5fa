package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/snodebox/snodebox/netstack/devnet"
)

func init() { commands["devnet"] = devnetCmd }

func devnetCmd(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: snodectl devnet up|down [flags]")
	}
	switch args[0] {
	case "up":
		return devnetUp(args[1:])
	case "down":
		return devnetDown(args[1:])
	default:
		return fmt.Errorf("devnet: unknown subcommand %q (want up or down)", args[0])
	}
}

func devnetUp(args []string) error {
	fs := flag.NewFlagSet("snodectl devnet up", flag.ContinueOnError)
	var o devnet.Options
	fs.IntVar(&o.Nodes, "nodes", 7, "number of nodes")
	fs.StringVar(&o.Dir, "dir", "build/devnet", "state directory (node data, logs, pid files, nodes.json)")
	fs.IntVar(&o.BasePort, "base-port", 23100, "loopback: node i uses HTTPS port base+2i and status port base+2i+1")
	fs.BoolVar(&o.Netns, "netns", false, "run each node in its own network namespace (root only)")
	fs.StringVar(&o.Snoded, "snoded", "", "snoded binary (default: next to snodectl, else go build)")
	fs.StringVar(&o.LogLevel, "log-level", "info", "node log level")
	fs.StringVar(&o.Transport, "transport", "https", "peer transport between nodes: https or omq (OxenMQ/CURVE, as upstream)")
	fs.IntVar(&o.Procs, "procs", 0, "GOMAXPROCS of each node: 0 shares this machine's cores out among the nodes, -1 gives each all of them")
	fs.BoolVar(&o.Profiling, "pprof", false, "start the nodes with --pprof: go tool pprof http://STATUS/debug/pprof/profile?seconds=N from this host")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Progress = os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := devnet.Up(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("registry: %s (POST /json_rpc get_n_service_nodes)\nCtrl-C stops the devnet.\n", d.Registry())
	select {
	case <-ctx.Done():
	case <-d.Exited():
		fmt.Println("every node has stopped")
	}
	return d.Stop()
}

func devnetDown(args []string) error {
	fs := flag.NewFlagSet("snodectl devnet down", flag.ContinueOnError)
	dir := fs.String("dir", "build/devnet", "state directory of the running devnet")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return devnet.Down(*dir, os.Stdout)
}
