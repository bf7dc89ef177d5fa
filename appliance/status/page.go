package status

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/snodebox/snodebox/board/sim"
)

//go:embed page.html
var pageHTML string

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"bytes":    HumanBytes,
	"ubytes":   func(n uint64) string { return HumanBytes(int64(min(n, 1<<62))) },
	"duration": func(s int64) string { return HumanDuration(time.Duration(s) * time.Second) },
	"pct":      percent,
	"ledHelp":  ledHelp,
	"since":    since,
	"deref":    func(p *float64) float64 { return *p },
	"diskUsed": func(d Disk) int {
		if d.FreeBytes >= d.TotalBytes {
			return 0
		}
		return percent(int64(min(d.TotalBytes-d.FreeBytes, 1<<62)), int64(min(d.TotalBytes, 1<<62)))
	},
}).Parse(pageHTML))

type pageData struct {
	Report
	Sim     bool
	Token   string // simulated board: the button API's per-process token
	Graphs  []Graph
	Armed   bool // simulated board: a factory reset waits for its confirming press
	Now     time.Time
	Members []memberRow
}

// memberRow is one swarm member with what we know of its reachability.
type memberRow struct {
	Key     string
	Self    bool
	Known   bool // we have a peer record for it
	OK      bool
	Address string
}

func members(r Report) []memberRow {
	peers := make(map[string]PeerState, len(r.Peers))
	for _, p := range r.Peers {
		peers[p.Ed25519] = p
	}
	out := make([]memberRow, 0, len(r.Swarm))
	for _, m := range r.Swarm {
		row := memberRow{Key: m, Self: m == r.Ed25519}
		if p, ok := peers[m]; ok {
			row.Known, row.OK, row.Address = true, p.OK, p.Address
		}
		out = append(out, row)
	}
	return out
}

func servePage(w http.ResponseWriter, r Report, sim *sim.Board, token string) {
	d := pageData{Report: r, Sim: sim != nil, Now: time.Now(), Members: members(r), Token: token, Graphs: Graphs(r.History)}
	if sim != nil {
		d.Armed = sim.FactoryResetArmed()
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, d); err != nil {
		slog.Error("render status page", "err", err)
		http.Error(w, "render status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Inline style and the one small refresh script only; nothing from elsewhere.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; img-src data:")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Write(buf.Bytes())
}

// HumanBytes prints a byte count for people: "1.5 GiB".
func HumanBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 || u == "TiB" {
			if v < 10 {
				return fmt.Sprintf("%.1f %s", v, u)
			}
			return fmt.Sprintf("%.0f %s", v, u)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// HumanDuration prints an uptime for people: "3 d 4 h", "5 min 2 s".
func HumanDuration(d time.Duration) string {
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%d s", s)
	case s < 3600:
		return fmt.Sprintf("%d min %d s", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%d h %d min", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%d d %d h", s/86400, s%86400/3600)
	}
}

func percent(part, whole int64) int {
	if whole <= 0 || part <= 0 {
		return 0
	}
	return int(min(100, part*100/whole))
}

func since(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return HumanDuration(d) + " ago"
}

var ledHelps = map[string]string{
	"booting":    "fast blink: starting up",
	"no-network": "two short blinks, pause: no network or no time",
	"syncing":    "slow blink: joining a swarm / syncing",
	"healthy":    "steady on, flickers with traffic: all good",
	"updating":   "short/long: installing an update, do not unplug",
	"degraded":   "three short blinks, pause: needs attention",
}

func ledHelp(s string) string {
	if h, ok := ledHelps[strings.ToLower(s)]; ok {
		return h
	}
	return ""
}
