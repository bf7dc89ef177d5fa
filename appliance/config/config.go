// Package config is the appliance's user configuration: snodebox.toml on the
// boot partition, which a user edits on a PC before (or between) boots, and
// the snode.* kernel command line the image sets, which overrides the file.
// Every key is validated with a message naming it and its line; an unknown
// key is an error, so a typo never silently does nothing.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/snodebox/snodebox/appliance/tuning"
	"github.com/snodebox/snodebox/image/release"
	"github.com/snodebox/snodebox/netstack/registry"
)

// FileName is the config file's name on the boot partition.
const FileName = "snodebox.toml"

// Config is the whole user configuration.
type Config struct {
	Hostname string       `toml:"hostname"`  // default snode-<first 8 hex of the ed25519 key>
	Registry string       `toml:"registry"`  // "self", "oxend:URL", "devnet:URL"
	PublicIP string       `toml:"public_ip"` // address published to the network (default: the DHCP/static address)
	Network  Network      `toml:"network"`
	Ports    Ports        `toml:"ports"`
	Status   Status       `toml:"status"`
	Update   Update       `toml:"update"`
	Board    Board        `toml:"board"`
	NTP      NTP          `toml:"ntp"`
	Identity Identity     `toml:"identity"`
	Tuning   TuningValues `toml:"tuning"` // tuning name → value, see appliance/tuning
}

// Network is how the wired link is configured.
type Network struct {
	Mode      string   `toml:"mode"`      // "dhcp" (default) or "static"
	Interface string   `toml:"interface"` // default: the first wired link
	Address   string   `toml:"address"`   // static: CIDR, e.g. 192.168.1.50/24
	Gateway   string   `toml:"gateway"`   // static: IPv4 or IPv6 address
	DNS       []string `toml:"dns"`       // static (or extra for DHCP): resolver addresses
}

// Ports are the listening ports.
type Ports struct {
	RPC    int `toml:"rpc"`    // HTTPS storage RPC, onion requests, peers (22021)
	Status int `toml:"status"` // plain-HTTP status page (80; 0 = no status page)
	// OMQ serves peers over OxenMQ (CURVE) on this port, as upstream
	// storage servers do (0 = HTTPS peers only; upstream uses 22020).
	OMQ int `toml:"omq"`
}

// Status is the status page's access policy.
type Status struct {
	// LANOnly refuses clients outside private and loopback ranges (default true).
	LANOnly bool `toml:"lan_only"`
}

// Update is where signed images come from and how a newly booted slot is
// judged.
type Update struct {
	Channel string `toml:"channel"` // https URL of the update manifest ("" = no automatic updates)
	// HealthWindow is how long a slot on trial has to become healthy before
	// it reboots unmarked (and, its attempts spent, the old slot boots).
	HealthWindow Duration `toml:"health_window"`
	// Interval is how often the channel is checked (with jitter).
	Interval Duration `toml:"interval"`
	// Inhibit stops automatic updates and pushes (an operator's freeze).
	Inhibit bool `toml:"inhibit"`
	// ReleaseKeys and AdminKeys add minisign public keys to the ones the
	// system in the slot trusts (they can add, never remove).
	ReleaseKeys []string `toml:"release_keys"`
	AdminKeys   []string `toml:"admin_keys"`
}

// DefaultUpdateInterval is update.interval's default.
const DefaultUpdateInterval = 6 * time.Hour

// DefaultHealthWindow is update.health_window's default: a Pi 3 reaches
// healthy in well under a minute, a slow DHCP server or time sync included.
const DefaultHealthWindow = 5 * time.Minute

// Duration is a TOML string like "5m" or "90s".
type Duration time.Duration

// UnmarshalText reads a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like \"5m\" or \"90s\"", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes it back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Board overrides the hardware defaults of the detected board.
type Board struct {
	LED             string `toml:"led"`         // /sys/class/leds name, e.g. "ACT"
	LEDGPIO         int    `toml:"led_gpio"`    // -1 = board default
	ButtonGPIO      int    `toml:"button_gpio"` // -1 = board default
	ButtonLowActive bool   `toml:"button_active_low"`
}

// NTP lists the time servers ("host" or "host:port").
type NTP struct {
	Servers []string `toml:"servers"`
}

// Identity is what a factory reset does with the node's keys.
type Identity struct {
	// NewKeysOnReset makes a factory reset generate a new identity instead of
	// restoring the backup from the boot partition.
	NewKeysOnReset bool `toml:"new_keys_on_reset"`
}

// DefaultNTP are public pools reachable from any home network.
var DefaultNTP = []string{"pool.ntp.org", "time.cloudflare.com", "time.google.com"}

// Defaults is the configuration of a card nobody edited.
func Defaults() Config {
	return Config{
		Registry: "self",
		Network:  Network{Mode: "dhcp"},
		Ports:    Ports{RPC: 22021, Status: 80},
		Status:   Status{LANOnly: true},
		Update:   Update{HealthWindow: Duration(DefaultHealthWindow), Interval: Duration(DefaultUpdateInterval)},
		Board:    Board{LEDGPIO: -1, ButtonGPIO: -1},
		NTP:      NTP{Servers: append([]string(nil), DefaultNTP...)},
		Tuning:   TuningValues{},
	}
}

// Error is a config problem at a place in the file.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted key, "" for syntax errors
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// Load reads path; a missing file is not an error (defaults apply). On any
// error the returned Config is Defaults(), so the caller can boot with it
// and show the error.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Defaults(), nil
	}
	if err != nil {
		return Defaults(), fmt.Errorf("read config %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse decodes and validates a config file's contents. All problems are
// reported together (errors.Join of *Error), so a user fixes them in one go.
func Parse(data []byte, name string) (Config, error) {
	c := Defaults()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line := pe.Position.Line
			if strings.Contains(pe.Message, `'\n'`) && line > 1 {
				line-- // the lexer already stepped past the line that lacks its end
			}
			return Defaults(), &Error{File: name, Line: line, Key: pe.LastKey, Msg: pe.Message}
		}
		// Type mismatches ("expected integer") name the key in the message.
		return Defaults(), &Error{File: name, Msg: err.Error()}
	}
	lines := keyLines(data)
	var errs []error
	for _, k := range md.Undecoded() {
		key := k.String()
		if len(k) >= 2 && k[0] == "tuning" {
			continue // checked below, with the list of known names
		}
		errs = append(errs, &Error{File: name, Line: lines[key], Key: key, Msg: "unknown key"})
	}
	for _, p := range c.validate() {
		errs = append(errs, &Error{File: name, Line: lineOf(lines, p.key), Key: p.key, Msg: p.msg})
	}
	if len(errs) > 0 {
		return Defaults(), errors.Join(errs...)
	}
	return c, nil
}

type problem struct{ key, msg string }

// Validate checks a Config built in code (Parse already validated files).
func (c Config) Validate() error {
	var errs []error
	for _, p := range c.validate() {
		errs = append(errs, fmt.Errorf("%s: %s", p.key, p.msg))
	}
	return errors.Join(errs...)
}

func (c Config) validate() []problem {
	var ps []problem
	bad := func(key, f string, a ...any) { ps = append(ps, problem{key, fmt.Sprintf(f, a...)}) }

	if c.Hostname != "" && !validHostname(c.Hostname) {
		bad("hostname", "%q is not a hostname (letters, digits and '-', up to 63 characters, not starting or ending with '-')", c.Hostname)
	}
	if err := ValidRegistry(c.Registry); err != nil {
		bad("registry", "%v", err)
	}
	if c.PublicIP != "" {
		if _, err := netip.ParseAddr(c.PublicIP); err != nil {
			bad("public_ip", "%q is not an IP address", c.PublicIP)
		}
	}
	switch c.Network.Mode {
	case "dhcp":
		if c.Network.Address != "" || c.Network.Gateway != "" {
			bad("network.mode", `is "dhcp" but network.address/gateway are set; use mode = "static"`)
		}
	case "static":
		if _, err := netip.ParsePrefix(c.Network.Address); err != nil {
			bad("network.address", "static mode needs an address with prefix length like 192.168.1.50/24, got %q", c.Network.Address)
		}
		if _, err := netip.ParseAddr(c.Network.Gateway); err != nil {
			bad("network.gateway", "static mode needs a gateway IP address, got %q", c.Network.Gateway)
		}
	default:
		bad("network.mode", `must be "dhcp" or "static", got %q`, c.Network.Mode)
	}
	for _, d := range c.Network.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			bad("network.dns", "%q is not an IP address", d)
		}
	}
	if c.Network.Interface != "" && (len(c.Network.Interface) > 15 || strings.ContainsAny(c.Network.Interface, "/ \t")) {
		bad("network.interface", "%q is not an interface name", c.Network.Interface)
	}
	if c.Ports.OMQ < 0 || c.Ports.OMQ > 65535 || (c.Ports.OMQ != 0 && (c.Ports.OMQ == c.Ports.RPC || c.Ports.OMQ == c.Ports.Status)) {
		bad("ports.omq", "must be 0 (off) or a port 1–65535 other than ports.rpc and ports.status, got %d", c.Ports.OMQ)
	}
	if c.Ports.RPC < 1 || c.Ports.RPC > 65535 {
		bad("ports.rpc", "must be 1–65535, got %d", c.Ports.RPC)
	}
	if c.Ports.Status < 0 || c.Ports.Status > 65535 {
		bad("ports.status", "must be 0–65535 (0 = no status page), got %d", c.Ports.Status)
	}
	if c.Ports.Status != 0 && c.Ports.Status == c.Ports.RPC {
		bad("ports.status", "must differ from ports.rpc (%d)", c.Ports.RPC)
	}
	if c.Update.Channel != "" {
		u, err := url.Parse(c.Update.Channel)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("update.channel", "must be an http(s) URL, got %q", c.Update.Channel)
		}
	}
	if iv := time.Duration(c.Update.Interval); iv < 10*time.Second || iv > 30*24*time.Hour {
		bad("update.interval", "must be between 10s and 720h, got %s", iv)
	}
	for _, k := range c.Update.ReleaseKeys {
		if _, err := release.ParsePublicKeys([]byte(k)); err != nil || strings.TrimSpace(k) == "" {
			bad("update.release_keys", "%q is not a minisign public key (the second line of snodebox.pub)", k)
		}
	}
	for _, k := range c.Update.AdminKeys {
		if _, err := release.ParsePublicKeys([]byte(k)); err != nil || strings.TrimSpace(k) == "" {
			bad("update.admin_keys", "%q is not a minisign public key (the second line of snodebox.pub)", k)
		}
	}
	if w := time.Duration(c.Update.HealthWindow); w < 20*time.Second || w > 24*time.Hour {
		bad("update.health_window", "must be between 20s and 24h, got %s", w)
	}
	if c.Board.LEDGPIO < -1 || c.Board.LEDGPIO > 53 {
		bad("board.led_gpio", "must be a BCM GPIO number 0–53 (or -1 for the board default), got %d", c.Board.LEDGPIO)
	}
	if c.Board.ButtonGPIO < -1 || c.Board.ButtonGPIO > 53 {
		bad("board.button_gpio", "must be a BCM GPIO number 0–53 (or -1 for the board default), got %d", c.Board.ButtonGPIO)
	}
	if c.Board.LED != "" && strings.ContainsAny(c.Board.LED, "/\x00") {
		bad("board.led", "%q is not an LED name", c.Board.LED)
	}
	for _, s := range c.NTP.Servers {
		if err := ValidNTPServer(s); err != nil {
			bad("ntp.servers", "%v", err)
		}
	}
	for k, v := range c.Tuning {
		if err := tuning.Validate(k, v); err != nil {
			bad("tuning."+k, "%v", err)
		}
	}
	return ps
}

func validHostname(h string) bool {
	if len(h) == 0 || len(h) > 63 || h[0] == '-' || h[len(h)-1] == '-' {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// ValidRegistry checks a registry spec.
func ValidRegistry(spec string) error {
	switch {
	case spec == "self":
		return nil
	case strings.HasPrefix(spec, "oxend:"), strings.HasPrefix(spec, "devnet:"):
		_, rest, _ := strings.Cut(spec, ":")
		u, err := url.Parse(rest)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%q: the part after the colon must be an http(s) URL", spec)
		}
		return nil
	case strings.HasPrefix(spec, "oxend-omq:"):
		if _, err := registry.ParseOxendOMQ(strings.TrimPrefix(spec, "oxend-omq:")); err != nil {
			return err
		}
		return nil
	}
	return fmt.Errorf("%q: want self, oxend:URL, oxend-omq:ipc:///path/oxend.sock, oxend-omq:curve://IP:PORT/KEY or devnet:URL", spec)
}

// ValidNTPServer checks "host" or "host:port".
func ValidNTPServer(s string) error {
	host := s
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, perr := strconv.Atoi(p)
		if perr != nil || n < 1 || n > 65535 {
			return fmt.Errorf("time server %q: bad port", s)
		}
		host = h
	}
	if host == "" || strings.ContainsAny(host, " /\t") {
		return fmt.Errorf("time server %q: want host or host:port", s)
	}
	return nil
}

// keyLines maps dotted keys to the line that sets them. BurntSushi/toml does
// not report positions for decoded keys, and "unknown key at line 7" is what
// a user editing on a PC needs, so this follows table headers and
// assignments (enough for the flat files users write).
func keyLines(data []byte) map[string]int {
	out := map[string]int{}
	table := ""
	for i, line := range strings.Split(string(data), "\n") {
		l := strings.TrimSpace(line)
		if l == "" || l[0] == '#' {
			continue
		}
		if strings.HasPrefix(l, "[") {
			name := strings.Trim(strings.SplitN(l, "#", 2)[0], "[] \t")
			table = unquoteKey(name)
			if _, ok := out[table]; !ok {
				out[table] = i + 1
			}
			continue
		}
		k, _, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		key := unquoteKey(strings.TrimSpace(k))
		if table != "" {
			key = table + "." + key
		}
		if _, ok := out[key]; !ok {
			out[key] = i + 1
		}
	}
	return out
}

// lineOf finds a key's line, or its table's when the key is missing.
func lineOf(lines map[string]int, key string) int {
	for k := key; k != ""; {
		if n, ok := lines[k]; ok {
			return n
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

func unquoteKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// TuningValues are [tuning] overrides. Users write numbers as numbers and
// names either quoted ("net.core.somaxconn" = 8192) or bare
// (net.core.somaxconn = 8192, which TOML reads as nested tables); both end
// up as the flat setting name with a string value.
type TuningValues map[string]string

// UnmarshalTOML implements toml.Unmarshaler.
func (t *TuningValues) UnmarshalTOML(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("tuning must be a table")
	}
	out := TuningValues{}
	var flatten func(prefix string, m map[string]any) error
	flatten = func(prefix string, m map[string]any) error {
		for k, v := range m {
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			switch v := v.(type) {
			case map[string]any:
				if err := flatten(name, v); err != nil {
					return err
				}
			case string:
				out[name] = v
			case int64:
				out[name] = strconv.FormatInt(v, 10)
			case bool:
				out[name] = map[bool]string{true: "1", false: "0"}[v]
			default:
				return fmt.Errorf("tuning.%s: want a string or an integer, got %T", name, v)
			}
		}
		return nil
	}
	if err := flatten("", m); err != nil {
		return err
	}
	*t = out
	return nil
}

//go:embed snodebox.example.toml
var example []byte

// Example is the commented example file the image puts on the boot
// partition, with every setting commented out: a card nobody edited boots
// with the defaults, and each line shows the user what to change.
func Example() []byte {
	var b strings.Builder
	for _, line := range strings.SplitAfter(string(example), "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") && !strings.HasPrefix(t, "[") {
			line = "# " + line
		}
		b.WriteString(line)
	}
	return []byte(b.String())
}
