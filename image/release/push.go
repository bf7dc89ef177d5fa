package release

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"aead.dev/minisign"
)

// PushTo sends the release in dir to a node (`snodectl update push`),
// signed with an admin key, and returns the node's answer.
func PushTo(ctx context.Context, node, dir string, admin minisign.PrivateKey) (int, string, error) {
	man, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return 0, "", err
	}
	sig, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil {
		return 0, "", err
	}
	m, err := ParseManifest(man)
	if err != nil {
		return 0, "", err
	}
	payload, err := os.Open(filepath.Join(dir, m.SlotPayload().Name))
	if err != nil {
		return 0, "", err
	}
	defer payload.Close()
	p := Push{Time: time.Now(), Manifest: man, Sig: sig}
	body := io.MultiReader(bytes.NewReader(man), bytes.NewReader(sig), payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(node, "/")+PushPath, body)
	if err != nil {
		return 0, "", err
	}
	req.ContentLength = int64(len(man)+len(sig)) + m.SlotPayload().Size
	req.Header.Set(HeaderPushTime, strconv.FormatInt(p.Time.UnixMilli(), 10))
	req.Header.Set(HeaderPushSig, base64.StdEncoding.EncodeToString(minisign.Sign(admin, p.Statement())))
	req.Header.Set(HeaderPushLayout, fmt.Sprintf("%d,%d", len(man), len(sig)))
	req.Header.Set("Content-Type", "application/octet-stream")
	// The node presents its self-signed identity certificate, as on the
	// Session network; the admin signature is what authenticates the push,
	// and the release signature what authenticates the system.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("push to %s: %w", node, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, strings.TrimSpace(string(answer)), nil
}
