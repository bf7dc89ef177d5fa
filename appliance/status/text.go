package status

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteText prints a report's facts for a terminal (`snodectl status`):
// the page's first screen, in the same words.
func WriteText(w io.Writer, r Report) {
	health := "healthy"
	if !r.Healthy {
		health = "NOT HEALTHY"
	}
	fmt.Fprintf(w, "%s (LED %s), up %s, version %s, board %s\n", health, r.LED, (time.Duration(r.UptimeS) * time.Second).String(), r.Version, orDash(r.Board.Name))
	for _, s := range r.Reasons {
		fmt.Fprintf(w, "  why: %s\n", s)
	}
	for _, s := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", firstLine(s))
	}
	if r.ConfigError != "" {
		fmt.Fprintf(w, "  snodebox.toml: %s\n", r.ConfigError)
	}
	fmt.Fprintf(w, "keys: ed25519 %s\n      x25519  %s\n", r.Ed25519, r.X25519)
	fmt.Fprintf(w, "network: %s, registry %s\n", orDash(r.Address), r.Registry)
	fmt.Fprintf(w, "swarm: %s, %d member(s)\n", orDash(r.SwarmID), len(r.Swarm))
	for _, m := range r.Swarm {
		me := ""
		if m == r.Ed25519 {
			me = " (this node)"
		}
		fmt.Fprintf(w, "  %s%s\n", m, me)
	}
	fmt.Fprintf(w, "messages: %d held, %s of %s; %d stored since start\n", r.Messages, HumanBytes(r.DBBytes), HumanBytes(r.DBCap), r.Stores)
	if r.Disk.TotalBytes > 0 {
		fmt.Fprintf(w, "disk: %s free of %s\n", HumanBytes(int64(r.Disk.FreeBytes)), HumanBytes(int64(r.Disk.TotalBytes)))
	}
	if u := r.Update; u != nil {
		state := "on trial (must become healthy within " + u.HealthWindow + ")"
		if u.Committed {
			state = "marked good"
		}
		fmt.Fprintf(w, "system: slot %s, version %s, %s\n", u.BootedSlot, u.Version, state)
		if u.OtherSlot.State == "empty" {
			fmt.Fprintf(w, "  other slot: empty\n")
		} else {
			fmt.Fprintf(w, "  other slot: version %s, %s\n", u.OtherSlot.Version, u.OtherSlot.State)
		}
		if s := u.LastSwitch; s != nil {
			fmt.Fprintf(w, "  last switch: %s → %s at %s: %s\n", s.From, s.To, s.At.Format(time.RFC3339), s.Reason)
		}
		if u.Rollback != "" {
			fmt.Fprintf(w, "  ROLLED BACK: %s (a short button press clears the warning)\n", u.Rollback)
		}
		if l := u.Last; l != nil {
			fmt.Fprintf(w, "  last update: %s %s at %s: %s\n", l.Version, l.Result, l.At.Format(time.RFC3339), l.Reason)
		}
		if u.Available != "" {
			fmt.Fprintf(w, "  available: %s\n", u.Available)
		}
		if u.Updating {
			fmt.Fprintf(w, "  updating now\n")
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
