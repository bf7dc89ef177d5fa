package rpcclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/snodebox/snodebox/netstack/httpbody"
)

// Path is the storage RPC endpoint.
const Path = "/storage_rpc/v1"

// MaxResponse bounds how much of an answer Do reads (retrieves answer at most
// ~7.8 MB of messages).
const MaxResponse = 16 << 20

// Client sends storage RPC requests over HTTPS. Nodes present self-signed
// certificates that Session clients do not verify, so neither does Client.
type Client struct {
	HTTP *http.Client
}

// New makes a Client with keep-alive connections and no certificate checks.
func New() *Client {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // nodes use self-signed certs (spec §1)
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	return &Client{HTTP: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// Default is a shared Client.
var Default = New()

// Do POSTs {"method","params"} to baseURL + /storage_rpc/v1 and returns
// the node's status and body. err is only for transport failures; a node's
// 4xx/5xx answer comes back as status and body.
func (c *Client) Do(ctx context.Context, baseURL, method string, params any) (int, []byte, error) {
	return c.DoRaw(ctx, baseURL, Body(method, params))
}

// DoRaw POSTs an already encoded body.
func (c *Client) DoRaw(ctx context.Context, baseURL string, body []byte) (int, []byte, error) {
	url := strings.TrimRight(baseURL, "/") + Path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("storage rpc %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("storage rpc %s: %w", url, err)
	}
	defer resp.Body.Close()
	out, err := httpbody.Read(resp.Body, resp.ContentLength, MaxResponse)
	if err != nil {
		return resp.StatusCode, out, fmt.Errorf("storage rpc %s: read answer: %w", url, err)
	}
	return resp.StatusCode, out, nil
}

// Do uses Default.
func Do(ctx context.Context, baseURL, method string, params any) (int, []byte, error) {
	return Default.Do(ctx, baseURL, method, params)
}
