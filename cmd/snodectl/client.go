package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/snodebox/snodebox/netstack/onion/onionclient"
	"github.com/snodebox/snodebox/netstack/onion/onionreq"
	"github.com/snodebox/snodebox/netstack/registry"
	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/rpcclient"
	"github.com/snodebox/snodebox/storage/swarm"
)

func init() { commands["client"] = clientCmd }

const clientUsage = `usage: snodectl client store|retrieve|info [flags]

Sends one storage RPC request as an onion request through a path of nodes
and prints the destination's decrypted answer. The path is either given
(--path ed1,ed2,ed3; the last node is the destination) or picked at random
(--hops N) from the node list, ending at a node of the account's swarm.`

func clientCmd(args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New(clientUsage)
	}
	method := args[0]
	if method != "store" && method != "retrieve" && method != "info" {
		return fmt.Errorf("client: unknown request %q\n%s", method, clientUsage)
	}
	fs := flag.NewFlagSet("snodectl client "+method, flag.ContinueOnError)
	nodesFile := fs.String("nodes", "build/devnet/nodes.json", "node list (devnet nodes.json format)")
	nodeURL := fs.String("node", "", "a node's HTTPS URL (e.g. https://127.0.0.1:22021, what make run serves): learn the node list from it, no --nodes file; --hops 0 sends the request straight to it")
	pathFlag := fs.String("path", "", "comma-separated ed25519 keys (or unique prefixes) of the path; last = destination")
	hops := fs.Int("hops", 3, "path length when --path is not given")
	encName := fs.String("enc", "aes-gcm", "layer encryption: aes-gcm or xchacha20")
	direct := fs.String("direct", "", "send the request to this URL instead of the first hop's HTTPS address")
	seedHex := fs.String("seed", "", "account Ed25519 seed, 64 hex (default: a fresh random account, printed)")
	ns := fs.Int("namespace", 0, "message namespace")
	data := fs.String("data", "hello from snodectl", "store: message data")
	ttl := fs.Duration("ttl", time.Hour, "store: time to live")
	lastHash := fs.String("last-hash", "", "retrieve: only messages after this hash")
	timeout := fs.Duration("timeout", time.Minute, "whole request timeout")
	fs.Usage = func() { fmt.Fprintln(os.Stderr, clientUsage); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	enc, err := onionreq.ParseEncType(*encName)
	if err != nil || enc == onionreq.AESCBC {
		return fmt.Errorf("--enc %q: want aes-gcm or xchacha20", *encName)
	}
	if *ns < -32768 || *ns > 32767 {
		return fmt.Errorf("--namespace %d out of range", *ns)
	}
	signer, err := clientAccount(*seedHex)
	if err != nil {
		return err
	}
	var nodes []registry.Node
	var self registry.Node
	if *nodeURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		nodes, self, err = onionclient.Discover(ctx, *nodeURL)
		cancel()
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s is %s; it knows %d node(s)\n", *nodeURL, self, len(nodes))
	} else if nodes, err = onionclient.LoadNodes(*nodesFile); err != nil {
		return err
	}

	var body []byte
	now := time.Now().UnixMilli()
	namespace := storage.Namespace(*ns)
	switch method {
	case "store":
		body = rpcclient.Body("store", signer.Store(rpcclient.StoreArgs{Namespace: namespace, Data: []byte(*data), Timestamp: now, TTL: ttl.Milliseconds()}))
	case "retrieve":
		body = rpcclient.Body("retrieve", signer.Retrieve(rpcclient.RetrieveArgs{Namespace: namespace, LastHash: *lastHash, Timestamp: now}))
	case "info":
		body = rpcclient.Body("info", rpcclient.Info())
	}

	if *nodeURL != "" && *hops == 0 {
		return directRPC(*nodeURL, body, *timeout)
	}
	var path []registry.Node
	switch {
	case *pathFlag != "":
		path, err = onionclient.PathByKeys(nodes, strings.Split(*pathFlag, ","))
	case *nodeURL != "":
		var dest func(registry.Node) bool
		if method != "info" {
			dest = ownerFilter(nodes, signer.Account)
		}
		path, err = pathFrom(self, nodes, *hops, dest)
	default:
		var dest func(registry.Node) bool
		if method != "info" {
			dest = ownerFilter(nodes, signer.Account)
		}
		path, err = onionclient.RandomPath(nodes, *hops, dest)
	}
	if err != nil {
		return err
	}
	for i, n := range path {
		fmt.Fprintf(os.Stderr, "hop %d: %s\n", i+1, n)
	}

	o, err := onionclient.Build(path, body, enc)
	if err != nil {
		return err
	}
	target := onionclient.URL(path[0])
	if *nodeURL != "" {
		target = *nodeURL // its published address may not be reachable from here
	}
	if *direct != "" {
		target = *direct
	}
	cl := onionclient.New()
	cl.Timeout = *timeout
	r, err := cl.Send(context.Background(), target, o)
	if err != nil {
		return err
	}
	fmt.Printf("status: %d\n", r.Status)
	var pretty bytes.Buffer
	if json.Indent(&pretty, r.Body, "", "  ") == nil {
		fmt.Println(pretty.String())
	} else {
		fmt.Println(string(r.Body))
	}
	if r.Status != 200 {
		return fmt.Errorf("destination answered %d", r.Status)
	}
	return nil
}

// clientAccount is a Session ID account (05 + X25519 of the seed's Ed25519
// key) for --seed, or for a fresh seed that is printed so the messages it
// stores can be retrieved later.
func clientAccount(seedHex string) (*rpcclient.Signer, error) {
	var seed []byte
	if seedHex == "" {
		seed = make([]byte, 32)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
	} else {
		var err error
		if seed, err = hex.DecodeString(seedHex); err != nil || len(seed) != 32 {
			return nil, fmt.Errorf("--seed: want 64 hex digits")
		}
	}
	s, err := rpcclient.NewSession(seed)
	if err != nil {
		return nil, err
	}
	if seedHex == "" {
		fmt.Fprintf(os.Stderr, "account seed: %x (pass --seed to reuse)\n", seed)
	}
	fmt.Fprintf(os.Stderr, "account: %s\n", s.Pubkey())
	return s, nil
}

// ownerFilter accepts the nodes of the swarm that owns a (spec §6.1), as the
// node list's swarm ids say; with no swarm ids, any node.
func ownerFilter(nodes []registry.Node, a storage.Account) func(registry.Node) bool {
	var ids []uint64
	for _, n := range nodes {
		if n.SwarmID != registry.NoSwarm {
			ids = append(ids, n.SwarmID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	owner := swarm.SwarmFor(ids, storage.Position(a.Key))
	return func(n registry.Node) bool { return n.SwarmID == owner }
}

// pathFrom is a path of up to hops nodes that starts at self (the node the
// user can reach) and ends in the swarm dest accepts; a network smaller
// than hops gives a shorter path, down to self alone.
func pathFrom(self registry.Node, nodes []registry.Node, hops int, dest func(registry.Node) bool) ([]registry.Node, error) {
	if hops < 1 {
		hops = 1
	}
	var others []registry.Node
	for _, n := range nodes {
		if n.Ed25519 != self.Ed25519 {
			others = append(others, n)
		}
	}
	if hops > len(others)+1 {
		fmt.Fprintf(os.Stderr, "the network has %d node(s): a %d-hop path\n", len(others)+1, len(others)+1)
		hops = len(others) + 1
	}
	if hops > 1 {
		if rest, err := onionclient.RandomPath(others, hops-1, dest); err == nil {
			return append([]registry.Node{self}, rest...), nil
		}
	}
	if dest != nil && !dest(self) {
		return nil, fmt.Errorf("no path of %d hops from %s ends in the account's swarm", hops, self)
	}
	return []registry.Node{self}, nil
}

// directRPC sends the storage request straight to the node (no onion).
func directRPC(url string, body []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	code, ans, err := rpcclient.Default.DoRaw(ctx, url, body)
	if err != nil {
		return err
	}
	fmt.Printf("status: %d\n", code)
	var pretty bytes.Buffer
	if json.Indent(&pretty, ans, "", "  ") == nil {
		fmt.Println(pretty.String())
	} else {
		fmt.Println(string(ans))
	}
	if code != 200 {
		return fmt.Errorf("node answered %d", code)
	}
	return nil
}
