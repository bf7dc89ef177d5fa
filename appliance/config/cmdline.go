package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Cmdline is what the kernel command line says about snodebox (contract
// (f)): snode.* keys the image sets, which override snodebox.toml.
type Cmdline struct {
	Data          string   // snode.data: device path or LABEL=name ("" = find by label)
	NTP           []string // snode.ntp: time servers
	NTPSet        bool     // snode.ntp was present (empty means: no time servers)
	RPCPort       int      // 0 = not set
	OMQPort       int      // snode.omq_port: -1 = not set, 0 = off
	StatusPort    int      // -1 = not set (0 is a valid "no status page")
	StatusLANOnly *bool
	Registry      string
	Watchdog      *bool         // snode.watchdog=0 keeps /dev/watchdog closed (QEMU raspi3b resets at once when it is opened)
	Slot          string        // snode.slot: the A/B slot U-Boot booted (shown on the status page)
	HealthWindow  time.Duration // snode.health_window: overrides update.health_window (0 = not set)
	Unknown       []string      // snode.* keys we do not know (logged, not fatal)
}

// ReadCmdline parses /proc/cmdline.
func ReadCmdline(path string) (Cmdline, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Cmdline{StatusPort: -1, OMQPort: -1}, fmt.Errorf("read kernel command line %s: %w", path, err)
	}
	return ParseCmdline(string(b))
}

// ParseCmdline reads the snode.* keys of a kernel command line. Values may
// be double-quoted as the kernel allows (snode.ntp="a b" is not split).
func ParseCmdline(s string) (Cmdline, error) {
	c := Cmdline{StatusPort: -1, OMQPort: -1}
	var errs []string
	for _, f := range splitCmdline(s) {
		k, v, hasV := strings.Cut(f, "=")
		if !strings.HasPrefix(k, "snode.") {
			continue
		}
		v = strings.Trim(v, `"`)
		switch k {
		case "snode.data":
			c.Data = v
		case "snode.ntp":
			c.NTPSet = true
			c.NTP = nil
			for _, srv := range strings.Split(v, ",") {
				if srv = strings.TrimSpace(srv); srv == "" {
					continue
				}
				if err := ValidNTPServer(srv); err != nil {
					errs = append(errs, "snode.ntp: "+err.Error())
					continue
				}
				c.NTP = append(c.NTP, srv)
			}
		case "snode.rpc_port":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				errs = append(errs, fmt.Sprintf("snode.rpc_port=%q: want 1–65535", v))
				continue
			}
			c.RPCPort = n
		case "snode.omq_port":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 65535 {
				errs = append(errs, fmt.Sprintf("snode.omq_port=%q: want 0 (off) or 1–65535", v))
				continue
			}
			c.OMQPort = n
		case "snode.status_port":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 65535 {
				errs = append(errs, fmt.Sprintf("snode.status_port=%q: want 0–65535", v))
				continue
			}
			c.StatusPort = n
		case "snode.status_lan_only":
			b, err := strconv.ParseBool(v)
			if err != nil || !hasV {
				errs = append(errs, fmt.Sprintf("snode.status_lan_only=%q: want 0 or 1", v))
				continue
			}
			c.StatusLANOnly = &b
		case "snode.registry":
			if err := ValidRegistry(v); err != nil {
				errs = append(errs, "snode.registry: "+err.Error())
				continue
			}
			c.Registry = v
		case "snode.watchdog":
			b, err := strconv.ParseBool(v)
			if err != nil || !hasV {
				errs = append(errs, fmt.Sprintf("snode.watchdog=%q: want 0 or 1", v))
				continue
			}
			c.Watchdog = &b
		case "snode.slot":
			if v != "A" && v != "B" {
				errs = append(errs, fmt.Sprintf("snode.slot=%q: want A or B", v))
				continue
			}
			c.Slot = v
		case "snode.health_window":
			d, err := time.ParseDuration(v)
			if err != nil || d < 20*time.Second || d > 24*time.Hour {
				errs = append(errs, fmt.Sprintf("snode.health_window=%q: want a duration from 20s to 24h", v))
				continue
			}
			c.HealthWindow = d
		default:
			c.Unknown = append(c.Unknown, k)
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("kernel command line: %s", strings.Join(errs, "; "))
	}
	return c, nil
}

// splitCmdline splits on spaces outside double quotes, as the kernel does.
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case (r == ' ' || r == '\t' || r == '\n') && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// Apply lays the command line over c: the image's settings win over the file.
func (c *Config) Apply(cl Cmdline) {
	if cl.NTPSet {
		c.NTP.Servers = append([]string(nil), cl.NTP...)
	}
	if cl.RPCPort != 0 {
		c.Ports.RPC = cl.RPCPort
	}
	if cl.StatusPort >= 0 {
		c.Ports.Status = cl.StatusPort
	}
	if cl.OMQPort >= 0 {
		c.Ports.OMQ = cl.OMQPort
	}
	if cl.StatusLANOnly != nil {
		c.Status.LANOnly = *cl.StatusLANOnly
	}
	if cl.Registry != "" {
		c.Registry = cl.Registry
	}
	if cl.HealthWindow != 0 {
		c.Update.HealthWindow = Duration(cl.HealthWindow)
	}
}
