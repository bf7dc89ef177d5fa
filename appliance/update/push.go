package update

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/snodebox/snodebox/image/release"
)

// PushSkew is how far a push's time may be from the node's clock.
const PushSkew = 5 * time.Minute

// bodySource serves the payload from a push's request body; it cannot
// resume (the pusher retries the whole push).
type bodySource struct {
	r    io.Reader
	used bool
}

func (b *bodySource) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, error) {
	if b.used || offset != 0 {
		return nil, errors.New("the push connection broke; push again")
	}
	b.used = true
	return io.NopCloser(b.r), nil
}

// PushHandler takes `snodectl update push`: the request is signed by an
// admin key over its time and the release's manifest and signature, newer
// than the last push accepted (no replays), and the release then goes
// through the same checks as one from the channel.
func (a *Agent) PushHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(code int, f string, args ...any) {
			msg := fmt.Sprintf(f, args...)
			a.Log.Warn("update push refused", "remote", r.RemoteAddr, "reason", msg)
			http.Error(w, msg, code)
		}
		a.mu.Lock()
		inhibit := a.Inhibit
		a.mu.Unlock()
		if inhibit {
			fail(http.StatusForbidden, "updates are switched off on this node (update.inhibit = true)")
			return
		}
		ms, err := strconv.ParseInt(r.Header.Get(release.HeaderPushTime), 10, 64)
		if err != nil {
			fail(http.StatusBadRequest, "missing or bad %s header", release.HeaderPushTime)
			return
		}
		t := time.UnixMilli(ms)
		if d := time.Since(t); d > PushSkew || d < -PushSkew {
			fail(http.StatusForbidden, "push time %s is %s from the node's clock (allowed ±%s)", t.UTC().Format(time.RFC3339), d.Round(time.Second), PushSkew)
			return
		}
		var ml, sl int
		if _, err := fmt.Sscanf(r.Header.Get(release.HeaderPushLayout), "%d,%d", &ml, &sl); err != nil || ml <= 0 || sl <= 0 || ml > 1<<20 || sl > 64<<10 {
			fail(http.StatusBadRequest, "missing or bad %s header", release.HeaderPushLayout)
			return
		}
		adminSig, err := base64.StdEncoding.DecodeString(r.Header.Get(release.HeaderPushSig))
		if err != nil || len(adminSig) == 0 {
			fail(http.StatusBadRequest, "missing or bad %s header", release.HeaderPushSig)
			return
		}
		head := make([]byte, ml+sl)
		if _, err := io.ReadFull(r.Body, head); err != nil {
			fail(http.StatusBadRequest, "short push body: %v", err)
			return
		}
		p := release.Push{Time: t, Manifest: head[:ml], Sig: head[ml:]}
		keys := a.AdminKeys()
		if len(keys) == 0 {
			fail(http.StatusForbidden, "this node accepts no pushes: no admin key (image build --admin-key, or update.admin_keys)")
			return
		}
		if _, err := release.Verify(keys, p.Statement(), adminSig); err != nil {
			fail(http.StatusForbidden, "push refused: %v", pushWords(err))
			return
		}
		a.mu.Lock()
		replay := ms <= a.rec.LastPushMs
		if !replay {
			a.rec.LastPushMs = ms
			a.save()
		}
		a.mu.Unlock()
		if replay {
			fail(http.StatusForbidden, "push refused: a push this old was already accepted (replay)")
			return
		}
		at, err := a.Install(r.Context(), p.Manifest, p.Sig, &bodySource{r: r.Body}, "push")
		w.Header().Set("Content-Type", "application/json")
		code := http.StatusOK
		if err != nil {
			code = http.StatusConflict
			if at.Result == ResultRefused {
				code = http.StatusForbidden
			}
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(at)
	})
}

func pushWords(err error) string {
	if errors.Is(err, release.ErrUnknownKey) {
		return "not signed by an admin key of this node"
	}
	return "the admin signature does not match"
}
