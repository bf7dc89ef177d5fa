package node

import (
	"strconv"

	"context"
	"encoding/base64"
	"github.com/snodebox/snodebox/storage/rpc"
	"sync"
	"time"
)

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Run starts every service and keeps each one running until ctx ends: a
// service that returns early is restarted with capped exponential backoff.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range n.Services() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			backoff := 500 * time.Millisecond
			for {
				start := time.Now()
				err := runGuarded(ctx, s)
				if ctx.Err() != nil {
					return
				}
				n.log.Error("service stopped; restarting", "svc", s.Name, "err", err, "in", backoff)
				if time.Since(start) > time.Minute {
					backoff = 500 * time.Millisecond
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, 30*time.Second)
			}
		}()
	}
	wg.Wait()
	return nil
}

func runGuarded(ctx context.Context, s Service) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{svc: s.Name, v: r}
		}
	}()
	return s.Run(ctx)
}

type panicError struct {
	svc string
	v   any
}

func (p *panicError) Error() string { return "panic in " + p.svc + ": " + fmtAny(p.v) }

func fmtAny(v any) string {
	if e, ok := v.(error); ok {
		return e.Error()
	}
	if s, ok := v.(string); ok {
		return s
	}
	return "non-error panic value"
}

func protocolString() string {
	v := rpc.ProtocolVersion
	return strconv.Itoa(v[0]) + "." + strconv.Itoa(v[1]) + "." + strconv.Itoa(v[2])
}

func hex64(v uint64) string { return strconv.FormatUint(v, 16) }
