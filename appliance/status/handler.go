package status

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/snodebox/snodebox/board"
	"github.com/snodebox/snodebox/board/sim"
)

// MaxHold bounds a simulated button hold; anything longer is a typo.
const MaxHold = 2 * time.Minute

// Handler serves the status page:
//
//	GET  /             HTML for people
//	GET  /status.json  the Report as JSON
//	GET  /metrics      Prometheus text format
//
// and, when sim is not nil (hosted mode), the simulated board:
//
//	POST /api/button   {"hold_ms": N} or {"power": true}, application/json
//	                   with the page's token in X-Snodebox-Token
//	GET  /api/led      {"led": "healthy", "history": [...]}
func Handler(src Source, sim *sim.Board) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, src.Report())
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		WriteMetrics(w, src.Report())
	})
	token := ""
	if sim != nil {
		token = newToken()
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		servePage(w, src.Report(), sim, token)
	})
	if sim != nil {
		mux.HandleFunc("POST /api/button", func(w http.ResponseWriter, r *http.Request) {
			if err := checkButtonRequest(r, token); err != nil {
				writeJSON(w, err.code, map[string]string{"error": err.msg})
				return
			}
			button(w, r, sim)
		})
		mux.HandleFunc("GET /api/led", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, ledReply{LED: sim.LED().String(), History: history(sim.History())})
		})
	}
	return mux
}

type ledReply struct {
	LED     string      `json:"led"`
	History []ledChange `json:"history"`
}

type ledChange struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
}

func history(h []board.LEDChange) []ledChange {
	out := make([]ledChange, len(h))
	for i, c := range h {
		out[i] = ledChange{State: c.State.String(), At: c.At}
	}
	return out
}

// ButtonRequest is the body of POST /api/button.
type ButtonRequest struct {
	HoldMS *int64 `json:"hold_ms"`
	Power  bool   `json:"power"`
}

// ButtonReply says what the press did.
type ButtonReply struct {
	Action string `json:"action"` // "" when the press completed no gesture
	Armed  bool   `json:"factory_reset_armed"`
	LED    string `json:"led"`
}

// TokenHeader carries the status page's per-process token on button
// presses.
const TokenHeader = "X-Snodebox-Token"

func newToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

type httpError struct {
	code int
	msg  string
}

// checkButtonRequest keeps other web pages from pressing the simulated
// button (a long hold arms a factory reset): a cross-site form can send
// neither application/json nor a custom header without a CORS preflight,
// which this server never grants, and cannot read the page to learn the
// token. The Host must be an address or localhost, so a DNS-rebound name
// does not make an attacker's page same-origin.
func checkButtonRequest(r *http.Request, token string) *httpError {
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != "application/json" {
		return &httpError{http.StatusUnsupportedMediaType, "the button takes application/json only"}
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(TokenHeader)), []byte(token)) != 1 {
		return &httpError{http.StatusForbidden, "missing or wrong " + TokenHeader + " (the token is on the status page)"}
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err != nil && host != "localhost" {
		return &httpError{http.StatusForbidden, "the button answers only requests to an IP address or localhost"}
	}
	return nil
}

func button(w http.ResponseWriter, r *http.Request, b *sim.Board) {
	req, err := readButton(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	var rep ButtonReply
	switch {
	case req.Power:
		b.PowerKey()
		rep.Action = board.ActionPowerOff.String()
	default:
		// PID 1 reads the action from the board and logs what it does.
		if a, ok := b.Press(time.Duration(*req.HoldMS) * time.Millisecond); ok {
			rep.Action = a.String()
		}
	}
	rep.Armed = b.FactoryResetArmed()
	rep.LED = b.LED().String()
	writeJSON(w, http.StatusOK, rep)
}

func readButton(r *http.Request) (ButtonRequest, error) {
	var req ButtonRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err != nil {
		return req, fmt.Errorf("read body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf(`body must be {"hold_ms": N} or {"power": true}: %w`, err)
	}
	switch {
	case req.Power && req.HoldMS != nil:
		return req, errors.New("give hold_ms or power, not both")
	case req.Power:
	case req.HoldMS == nil:
		return req, errors.New(`body must be {"hold_ms": N} or {"power": true}`)
	case *req.HoldMS < 0 || time.Duration(*req.HoldMS)*time.Millisecond > MaxHold:
		return req, fmt.Errorf("hold_ms must be between 0 and %d", MaxHold.Milliseconds())
	}
	return req, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// LANOnly lets through only clients on loopback, private (RFC 1918, ULA) or
// link-local addresses and answers everyone else 403: the status page shows
// the node's keys and logs and has no login. Callers that want the page
// public (snode.status_lan_only=0) simply do not wrap.
func LANOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !LANAddr(r.RemoteAddr) {
			http.Error(w, "403 forbidden: the status page only answers the local network", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// LANAddr reports whether a "host:port" (or bare host) is a local-network client.
func LANAddr(remote string) bool {
	a, ok := clientIP(remote)
	return ok && (a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast())
}

// clientIP is the address of a "host:port" (or bare host), IPv4-mapped
// addresses unmapped.
func clientIP(remote string) (netip.Addr, bool) {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	return a.Unmap(), err == nil
}
