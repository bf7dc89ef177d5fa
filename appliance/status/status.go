// Package status is the appliance's local status page: an HTML page a
// hobbyist reads at a glance, the same facts as /status.json, Prometheus text
// at /metrics, and in hosted mode the simulated board's button and LED API.
package status

import (
	"time"

	"github.com/snodebox/snodebox/appliance/node"
	"github.com/snodebox/snodebox/appliance/slots"
	"github.com/snodebox/snodebox/board"
)

// Report is everything the status page shows. node.Status is embedded so its
// fields (among them "healthy" and "reasons") stay top level in JSON.
type Report struct {
	node.Status
	Warnings     []string       `json:"warnings"`
	LED          string         `json:"led"`
	Board        board.Info     `json:"board"`
	TemperatureC *float64       `json:"temperature_c"`
	Services     []ServiceState `json:"services"`
	Disk         Disk           `json:"disk"`
	Memory       Memory         `json:"memory"`
	Tuning       []Tuned        `json:"tuning"`
	Peers        []PeerState    `json:"peers"`
	Slot         string         `json:"slot"`
	Update       *Update        `json:"update"` // nil: not booted from a slot (hosted, kernel+initramfs)
	ConfigError  string         `json:"config_error,omitempty"`
	History      []Sample       `json:"history"` // the last hour, oldest first
	Logs         []string       `json:"logs"`
}

// Update is /status.json's "update" object: the A/B slots (booted slot,
// the other slot's state, the last switch and why) and, from the update
// agent, the last update attempt and what the channel offers.
type Update struct {
	slots.Status
	Last          *Attempt `json:"last,omitempty"`
	Available     string   `json:"available,omitempty"`
	Updating      bool     `json:"updating"`
	RollbackIndex uint64   `json:"rollback_index"`
}

// Attempt is one update attempt as the agent records it.
type Attempt struct {
	Version string    `json:"version"`
	Result  string    `json:"result"` // committed, rolled-back, refused, failed
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// ServiceState is one supervised service.
type ServiceState struct {
	Name      string `json:"name"`
	State     string `json:"state"` // e.g. "running", "backoff", "stopped", "crash-loop"
	Restarts  int    `json:"restarts"`
	LastError string `json:"last_error,omitempty"`
}

// Disk is the data partition's usage.
type Disk struct {
	Mount      string `json:"mount"`
	TotalBytes uint64 `json:"total_bytes"`
	FreeBytes  uint64 `json:"free_bytes"`
}

// Memory is the system's memory and our own resident set.
type Memory struct {
	TotalBytes     uint64 `json:"total_bytes"`
	AvailableBytes uint64 `json:"available_bytes"`
	RSSBytes       uint64 `json:"rss_bytes"`
}

// Tuned is one applied tuning value (DESIGN §6).
type Tuned struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	Default string `json:"default"`
	Source  string `json:"source"` // "default", "config", "kernel", "failed: …"
}

// PeerState is another node we talk to (swarm members first).
type PeerState struct {
	Ed25519  string    `json:"ed25519"`
	Address  string    `json:"address"`
	OK       bool      `json:"ok"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	Failures int       `json:"failures"`
}

// Source produces a fresh Report for every request.
type Source interface {
	Report() Report
}

// SourceFunc adapts a function to Source.
type SourceFunc func() Report

func (f SourceFunc) Report() Report { return f() }
