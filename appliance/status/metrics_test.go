package status

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// parseExposition checks text against the Prometheus text format (0.0.4)
// strictly: HELP/TYPE before samples, one TYPE per family, families
// contiguous, valid names, escapes and values, no duplicate series.
func parseExposition(text string) ([]sample, map[string]string, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, nil, fmt.Errorf("does not end in a newline")
	}
	types := map[string]string{}
	done := map[string]bool{} // families whose block has ended
	seen := map[string]bool{}
	var out []sample
	current := ""
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := i + 1
		if line == "" {
			return nil, nil, fmt.Errorf("line %d: empty line", n)
		}
		if strings.HasPrefix(line, "#") {
			f := strings.SplitN(line, " ", 4)
			if len(f) < 3 || (f[1] != "HELP" && f[1] != "TYPE") {
				return nil, nil, fmt.Errorf("line %d: bad comment %q", n, line)
			}
			name := f[2]
			if !metricName.MatchString(name) {
				return nil, nil, fmt.Errorf("line %d: bad metric name %q", n, name)
			}
			if name != current {
				if done[name] {
					return nil, nil, fmt.Errorf("line %d: family %s not contiguous", n, name)
				}
				if current != "" {
					done[current] = true
				}
				current = name
			}
			if f[1] == "TYPE" {
				if len(f) != 4 {
					return nil, nil, fmt.Errorf("line %d: TYPE without type", n)
				}
				switch f[3] {
				case "counter", "gauge", "histogram", "summary", "untyped":
				default:
					return nil, nil, fmt.Errorf("line %d: unknown type %q", n, f[3])
				}
				if _, dup := types[name]; dup {
					return nil, nil, fmt.Errorf("line %d: second TYPE for %s", n, name)
				}
				types[name] = f[3]
			}
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", n, err)
		}
		if s.name != current {
			return nil, nil, fmt.Errorf("line %d: sample of %s outside its family block", n, s.name)
		}
		if _, ok := types[s.name]; !ok {
			return nil, nil, fmt.Errorf("line %d: sample of %s before its TYPE", n, s.name)
		}
		key := s.name + fmt.Sprint(s.labels)
		if seen[key] {
			return nil, nil, fmt.Errorf("line %d: duplicate series %s", n, key)
		}
		seen[key] = true
		out = append(out, s)
	}
	return out, types, nil
}

func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("no value in %q", line)
	}
	s.name = line[:i]
	if !metricName.MatchString(s.name) {
		return s, fmt.Errorf("bad metric name %q", s.name)
	}
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return s, fmt.Errorf("bad label in %q", line)
			}
			ln := rest[:eq]
			if !labelName.MatchString(ln) {
				return s, fmt.Errorf("bad label name %q", ln)
			}
			rest = rest[eq+2:]
			var v strings.Builder
			for {
				if rest == "" {
					return s, fmt.Errorf("unterminated label value in %q", line)
				}
				c := rest[0]
				rest = rest[1:]
				if c == '"' {
					break
				}
				if c == '\n' {
					return s, fmt.Errorf("raw newline in label value")
				}
				if c == '\\' {
					if rest == "" {
						return s, fmt.Errorf("dangling escape")
					}
					switch rest[0] {
					case '\\':
						v.WriteByte('\\')
					case '"':
						v.WriteByte('"')
					case 'n':
						v.WriteByte('\n')
					default:
						return s, fmt.Errorf("bad escape \\%c", rest[0])
					}
					rest = rest[1:]
					continue
				}
				v.WriteByte(c)
			}
			if _, dup := s.labels[ln]; dup {
				return s, fmt.Errorf("label %s twice", ln)
			}
			s.labels[ln] = v.String()
			if strings.HasPrefix(rest, ",") {
				rest = rest[1:]
			}
		}
	}
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 || !strings.HasPrefix(rest, " ") {
		return s, fmt.Errorf("bad value part %q", rest)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, fmt.Errorf("value %q: %w", f[0], err)
	}
	s.value = v
	return s, nil
}

func TestMetricsParseAndCarryTheReport(t *testing.T) {
	r := sampleReport()
	r.Services = append(r.Services, ServiceState{Name: `odd "name"\ with` + "\nnewline", State: "stopped", Restarts: 1})
	r.Version = `v"1"`
	rec := get(t, Handler(SourceFunc(func() Report { return r }), nil), "/metrics")
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("content type %q", ct)
	}
	samples, types, err := parseExposition(rec.Body.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, rec.Body)
	}
	val := func(name string, labels map[string]string) (float64, bool) {
		for _, s := range samples {
			if s.name == name && fmt.Sprint(s.labels) == fmt.Sprint(labels) {
				return s.value, true
			}
		}
		return 0, false
	}
	none := map[string]string{}
	want := []struct {
		name   string
		labels map[string]string
		v      float64
	}{
		{"snodebox_healthy", none, 0},
		{"snodebox_health_reasons", none, 2},
		{"snodebox_messages", none, 1234},
		{"snodebox_db_bytes", none, 5 << 20},
		{"snodebox_db_cap_bytes", none, 100 << 20},
		{"snodebox_uptime_seconds", none, 93784},
		{"snodebox_rss_bytes", none, 40 << 20},
		{"snodebox_temperature_celsius", none, 51.5},
		{"snodebox_swarm_members", none, 2},
		{"snodebox_peers_reachable", none, 1},
		{"snodebox_disk_free_bytes", none, 20 << 30},
		{"snodebox_stores_total", none, 4321},
		{"snodebox_service_restarts_total", map[string]string{"service": "swarm"}, 3},
		{"snodebox_service_restarts_total", map[string]string{"service": `odd "name"\ with` + "\nnewline"}, 1},
		{"snodebox_service_running", map[string]string{"service": "https"}, 1},
		{"snodebox_service_running", map[string]string{"service": "swarm"}, 0},
		{"snodebox_led_state", map[string]string{"state": "syncing"}, 1},
		{"snodebox_build_info", map[string]string{"version": `v"1"`, "protocol": "2.11.0", "slot": "A", "board": "rpi4"}, 1},
	}
	for _, w := range want {
		got, ok := val(w.name, w.labels)
		if !ok || got != w.v {
			t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, got, ok, w.v)
		}
	}
	for name, typ := range types {
		if strings.HasSuffix(name, "_total") != (typ == "counter") {
			t.Errorf("%s is a %s: counters and only counters end in _total", name, typ)
		}
	}

	// Without a temperature there is no temperature sample (not a fake 0).
	r.TemperatureC = nil
	rec = get(t, Handler(SourceFunc(func() Report { return r }), nil), "/metrics")
	if strings.Contains(rec.Body.String(), "snodebox_temperature_celsius") {
		t.Error("temperature exported without a sensor")
	}
	if _, _, err := parseExposition(rec.Body.String()); err != nil {
		t.Fatal(err)
	}
}

func TestExpositionCheckerCatchesMistakes(t *testing.T) {
	for _, bad := range []string{
		"snodebox_x 1",   // no newline at end
		"snodebox_x 1\n", // no TYPE
		"# TYPE snodebox_x gauge\nsnodebox_x{a=\"\\q\"} 1\n", // bad escape
		"# TYPE snodebox_x gauge\nsnodebox_x one\n",          // bad value
		"# TYPE snodebox_x gauge\nsnodebox_x 1\nsnodebox_x 2\n",
		"# TYPE snodebox_x gauge\nsnodebox_x 1\n# TYPE snodebox_y gauge\nsnodebox_y 1\nsnodebox_x 3\n",
	} {
		if _, _, err := parseExposition(bad); err == nil {
			t.Errorf("checker accepted %q", bad)
		}
	}
}
