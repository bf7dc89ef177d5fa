package status

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// WriteMetrics writes r in the Prometheus text exposition format (0.0.4).
func WriteMetrics(w io.Writer, r Report) error {
	m := &metricWriter{w: bufio.NewWriter(w)}
	m.gauge("snodebox_healthy", "1 when every health check passes.", b2f(r.Healthy))
	m.gauge("snodebox_health_reasons", "Number of failed health checks.", float64(len(r.Reasons)))
	m.gauge("snodebox_warnings", "Number of warnings (not failures), e.g. clock not synced.", float64(len(r.Warnings)))
	m.gauge("snodebox_uptime_seconds", "Seconds since the node started.", float64(r.UptimeS))
	m.gauge("snodebox_messages", "Messages held in the store.", float64(r.Messages))
	m.gauge("snodebox_db_bytes", "Size of the message database.", float64(r.DBBytes))
	m.gauge("snodebox_db_cap_bytes", "Configured cap of the message database.", float64(r.DBCap))
	m.counter("snodebox_stores_total", "Messages stored since start.", float64(r.Stores))
	m.counter("snodebox_fsyncs_total", "Database fsyncs since start.", float64(r.Fsyncs))
	m.gauge("snodebox_swarm_members", "Members of our swarm, ourselves included.", float64(len(r.Swarm)))
	m.gauge("snodebox_rss_bytes", "Resident memory of snoded.", float64(r.Memory.RSSBytes))
	m.gauge("snodebox_memory_total_bytes", "Total system memory.", float64(r.Memory.TotalBytes))
	m.gauge("snodebox_memory_available_bytes", "Memory available to new work.", float64(r.Memory.AvailableBytes))
	m.gauge("snodebox_disk_total_bytes", "Size of the data partition.", float64(r.Disk.TotalBytes))
	m.gauge("snodebox_disk_free_bytes", "Free space on the data partition.", float64(r.Disk.FreeBytes))
	if r.TemperatureC != nil {
		m.gauge("snodebox_temperature_celsius", "SoC temperature.", *r.TemperatureC)
	}

	up := 0
	for _, p := range r.Peers {
		if p.OK {
			up++
		}
	}
	m.gauge("snodebox_peers", "Peers known to this node.", float64(len(r.Peers)))
	m.gauge("snodebox_peers_reachable", "Peers that answered at last contact.", float64(up))

	if len(r.Services) > 0 {
		m.head("snodebox_service_restarts_total", "counter", "Restarts of each supervised service.")
		for _, s := range r.Services {
			m.sample("snodebox_service_restarts_total", float64(s.Restarts), "service", s.Name)
		}
		m.head("snodebox_service_running", "gauge", "1 when the service is running.")
		for _, s := range r.Services {
			m.sample("snodebox_service_running", b2f(s.State == "running"), "service", s.Name)
		}
	}
	if r.LED != "" {
		m.head("snodebox_led_state", "gauge", "The LED state shown now (value 1).")
		m.sample("snodebox_led_state", 1, "state", r.LED)
	}
	if u := r.Update; u != nil {
		m.head("snodebox_slot_info", "gauge", "The running slot, its version and the other slot's state (value 1).")
		m.sample("snodebox_slot_info", 1, "booted", u.BootedSlot, "version", u.Version, "other_state", u.OtherSlot.State, "other_version", u.OtherSlot.Version)
		m.gauge("snodebox_slot_committed", "1 once the running slot was marked good.", b2f(u.Committed))
		m.gauge("snodebox_update_rollback_pending", "1 while a rollback is not acknowledged.", b2f(u.Rollback != ""))
		m.gauge("snodebox_update_in_progress", "1 while the update agent writes the other slot.", b2f(u.Updating))
		m.gauge("snodebox_update_rollback_index", "The rollback index of the installed release.", float64(u.RollbackIndex))
		if l := u.Last; l != nil {
			m.head("snodebox_update_last_timestamp_seconds", "gauge", "When the last update attempt ended, by version and result.")
			m.sample("snodebox_update_last_timestamp_seconds", float64(l.At.Unix()), "version", l.Version, "result", l.Result)
		}
	}
	m.head("snodebox_build_info", "gauge", "Version, protocol, slot and board (value 1).")
	m.sample("snodebox_build_info", 1, "version", r.Version, "protocol", r.Protocol, "slot", r.Slot, "board", r.Board.Name)
	return m.flush()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

type metricWriter struct {
	w *bufio.Writer
}

func (m *metricWriter) head(name, typ, help string) {
	fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, typ)
}

func (m *metricWriter) gauge(name, help string, v float64) {
	m.head(name, "gauge", help)
	m.sample(name, v)
}

func (m *metricWriter) counter(name, help string, v float64) {
	m.head(name, "counter", help)
	m.sample(name, v)
}

// sample writes one line; labels are name, value pairs.
func (m *metricWriter) sample(name string, v float64, labels ...string) {
	m.w.WriteString(name)
	if len(labels) > 0 {
		m.w.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				m.w.WriteByte(',')
			}
			fmt.Fprintf(m.w, `%s="%s"`, labels[i], escapeLabel(labels[i+1]))
		}
		m.w.WriteByte('}')
	}
	m.w.WriteByte(' ')
	m.w.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
	m.w.WriteByte('\n')
}

func (m *metricWriter) flush() error { return m.w.Flush() }

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
