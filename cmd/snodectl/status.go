package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/snodebox/snodebox/appliance/status"
)

func init() { commands["status"] = statusCmd }

func statusCmd(args []string) error {
	fs := flag.NewFlagSet("snodectl status", flag.ContinueOnError)
	node := fs.String("node", "http://127.0.0.1:8080", "the node's status page (what make run serves)")
	asJSON := fs.Bool("json", false, "print /status.json as it is")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u := strings.TrimRight(*node, "/") + "/status.json"
	c := &http.Client{Timeout: 15 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	if *asJSON {
		os.Stdout.Write(body)
		return nil
	}
	var r status.Report
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s is not a snodebox status page: %w", u, err)
	}
	if r.Ed25519 == "" {
		return errors.New(u + " is not a snodebox status page (no node key)")
	}
	status.WriteText(os.Stdout, r)
	return nil
}
