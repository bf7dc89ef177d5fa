package httpspeer

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/snodebox/snodebox/netstack/peer"
	"github.com/snodebox/snodebox/netstack/registry"
)

// Coalescing. The entry node of a busy swarm forwards every client store to
// each member as storage_cc: one HTTP exchange per store per member, whose
// TLS records, header parsing, syscalls and goroutine wake-ups on both ends
// cost more than the store itself. So, as the message store groups its
// fsyncs, a peer's storage_cc calls group on the wire: while an exchange
// with a peer is out, further calls queue, and the next exchange carries
// all of them as one POST /sn/v1/batch. An idle swarm sends each call
// alone, as before, with no added wait; a busy one sends about one
// exchange per member per group commit.
//
// Only storage_cc coalesces: its handlers take about as long as each other,
// so none waits long behind another in the same exchange. An onion hop (a
// slow relay) or a dump (megabytes) goes alone.
//
// Wire format (big-endian), request:
//
//	count(2) { command length(1) | command | body length(4) | body }…
//
// reply (status 200; any other status is the batch failing as a whole):
//
//	count(2) { status(2) | body length(4) | body }…
//
// A node without the batch command answers 404; its pool then sends calls
// alone for the rest of the process.

// batchCommand is the path of a coalesced exchange under PathPrefix.
const batchCommand = "batch"

const (
	// maxBatchesInFlight is exchanges out per peer at once. One was best
	// in the 3-node swarm bench, interleaved runs against 2 and against
	// no coalescing: 863–1,080 µs of CPU per store against 1,017–1,460
	// and 1,233–1,610; the peer's store pipeline already overlaps the
	// next group with the last one's fsync, so a second exchange in
	// flight only splits the queue into smaller batches.
	maxBatchesInFlight = 1
	// maxBatchCalls and maxBatchBytes bound one exchange.
	maxBatchCalls = 128
	maxBatchBytes = 1 << 20
)

// coalesces reports whether calls of command share exchanges.
func coalesces(command string) bool { return command == peer.CmdStorageCC }

// batcher is one peer pool's queue of calls waiting for an exchange.
type batcher struct {
	mu          sync.Mutex
	queue       []*queuedCall
	inFlight    int
	unsupported bool // the peer answered 404 to a batch
}

type queuedCall struct {
	ctx     context.Context
	command string
	body    []byte
	done    chan callResult // buffered: the sender never blocks on it
}

type callResult struct {
	reply peer.Reply
	err   error
}

// callCoalesced sends a storage_cc call alone when the pool is not busy,
// or queues it for the next batch when it is.
func (t *Transport) callCoalesced(ctx context.Context, to registry.Node, pc *peerClient, command string, body []byte) (peer.Reply, error) {
	b := &pc.batch
	b.mu.Lock()
	if b.unsupported {
		b.mu.Unlock()
		return t.callOne(ctx, to, pc, command, body)
	}
	if b.inFlight < maxBatchesInFlight && len(b.queue) == 0 {
		b.inFlight++
		b.mu.Unlock()
		reply, err := t.callOne(ctx, to, pc, command, body)
		t.exchangeDone(to, pc)
		return reply, err
	}
	c := &queuedCall{ctx: ctx, command: command, body: body, done: make(chan callResult, 1)}
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	select {
	case r := <-c.done:
		return r.reply, r.err
	case <-ctx.Done():
		// The batch may still carry it (a store that lands after its
		// caller gave up, as with a call already on the wire).
		return peer.Reply{}, classify(ctx, to, command, ctx.Err())
	}
}

// exchangeDone ends one exchange and starts the next from the queue.
func (t *Transport) exchangeDone(to registry.Node, pc *peerClient) {
	b := &pc.batch
	b.mu.Lock()
	b.inFlight--
	if len(b.queue) == 0 || b.inFlight >= maxBatchesInFlight {
		b.mu.Unlock()
		return
	}
	n, size := 0, 0
	for n < len(b.queue) && n < maxBatchCalls && (n == 0 || size+len(b.queue[n].body) <= maxBatchBytes) {
		size += len(b.queue[n].body)
		n++
	}
	calls := make([]*queuedCall, n)
	copy(calls, b.queue)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	b.inFlight++
	b.mu.Unlock()
	go func() {
		t.sendBatch(to, pc, calls)
		t.exchangeDone(to, pc)
	}()
}

// sendBatch delivers calls in one exchange (or alone, when only one is
// still wanted) and hands each caller its reply.
func (t *Transport) sendBatch(to registry.Node, pc *peerClient, calls []*queuedCall) {
	live := calls[:0]
	var deadline time.Time
	for _, c := range calls {
		if err := c.ctx.Err(); err != nil {
			c.done <- callResult{err: classify(c.ctx, to, c.command, err)}
			continue
		}
		live = append(live, c)
		if d, ok := c.ctx.Deadline(); !ok {
			deadline = time.Now().Add(DefaultCallTimeout)
		} else if d.After(deadline) {
			deadline = d
		}
	}
	switch len(live) {
	case 0:
		return
	case 1:
		c := live[0]
		reply, err := t.callOne(c.ctx, to, pc, c.command, c.body)
		c.done <- callResult{reply, err}
		return
	}
	// The exchange outlives any one caller's cancellation (the others
	// still want it) but not the latest deadline among them.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	reply, err := t.callOne(ctx, to, pc, batchCommand, encodeBatch(live))
	if err == nil && reply.Status == http.StatusNotFound {
		pc.batch.mu.Lock()
		pc.batch.unsupported = true
		pc.batch.mu.Unlock()
		t.cfg.Logger.Info("peer does not batch calls; sending them one by one", "peer", to.Ed25519Hex())
		t.sendAlone(to, pc, live)
		return
	}
	var replies []peer.Reply
	if err == nil {
		if reply.Status != http.StatusOK {
			// The peer refused the exchange as a whole (unknown caller,
			// too large, not ready): each call gets that answer, as it
			// would have alone, so the swarm's retry rules see a status.
			for _, c := range live {
				c.done <- callResult{reply: reply}
			}
			return
		}
		if replies, err = decodeBatchReply(reply.Body); err == nil && len(replies) != len(live) {
			err = fmt.Errorf("peer %s batch: %d replies to %d calls", to, len(replies), len(live))
		}
	}
	for i, c := range live {
		if err != nil {
			c.done <- callResult{err: err}
		} else {
			c.done <- callResult{reply: replies[i]}
		}
	}
}

// sendAlone sends calls concurrently, one exchange each.
func (t *Transport) sendAlone(to registry.Node, pc *peerClient, calls []*queuedCall) {
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reply, err := t.callOne(c.ctx, to, pc, c.command, c.body)
			c.done <- callResult{reply, err}
		}()
	}
	wg.Wait()
}

func encodeBatch(calls []*queuedCall) []byte {
	size := 2
	for _, c := range calls {
		size += 1 + len(c.command) + 4 + len(c.body)
	}
	out := make([]byte, 0, size)
	out = binary.BigEndian.AppendUint16(out, uint16(len(calls)))
	for _, c := range calls {
		out = append(out, byte(len(c.command)))
		out = append(out, c.command...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(c.body)))
		out = append(out, c.body...)
	}
	return out
}

var errBatchFormat = errors.New("malformed batch")

type batchCall struct {
	command string
	body    []byte
}

// decodeBatch reads a batch request; bodies are slices of b.
func decodeBatch(b []byte) ([]batchCall, error) {
	if len(b) < 2 {
		return nil, errBatchFormat
	}
	n := int(binary.BigEndian.Uint16(b))
	if n == 0 || n > maxBatchCalls {
		return nil, fmt.Errorf("%w: %d calls", errBatchFormat, n)
	}
	b = b[2:]
	calls := make([]batchCall, 0, n)
	for range n {
		if len(b) < 1 || len(b) < 1+int(b[0])+4 {
			return nil, errBatchFormat
		}
		cmd := string(b[1 : 1+b[0]])
		b = b[1+int(b[0]):]
		size := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(size) > uint64(len(b)) {
			return nil, errBatchFormat
		}
		calls = append(calls, batchCall{cmd, b[:size:size]})
		b = b[size:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last call", errBatchFormat, len(b))
	}
	return calls, nil
}

func encodeBatchReply(replies []peer.Reply) []byte {
	size := 2
	for _, r := range replies {
		size += 6 + len(r.Body)
	}
	out := make([]byte, 0, size)
	out = binary.BigEndian.AppendUint16(out, uint16(len(replies)))
	for _, r := range replies {
		out = binary.BigEndian.AppendUint16(out, uint16(r.Status))
		out = binary.BigEndian.AppendUint32(out, uint32(len(r.Body)))
		out = append(out, r.Body...)
	}
	return out
}

func decodeBatchReply(b []byte) ([]peer.Reply, error) {
	if len(b) < 2 {
		return nil, errBatchFormat
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	out := make([]peer.Reply, 0, min(n, maxBatchCalls))
	for range n {
		if len(b) < 6 {
			return nil, errBatchFormat
		}
		status := int(binary.BigEndian.Uint16(b))
		size := binary.BigEndian.Uint32(b[2:])
		b = b[6:]
		if uint64(size) > uint64(len(b)) {
			return nil, errBatchFormat
		}
		out = append(out, peer.Reply{Status: status, Body: b[:size:size]})
		b = b[size:]
	}
	if len(b) != 0 {
		return nil, errBatchFormat
	}
	return out, nil
}

// serveBatch runs each call of a batch concurrently (their stores then
// share one group commit) and answers their replies in order. A call of a
// command that does not coalesce, or an unknown one, gets its own 404 or
// 400; the others still run.
func (t *Transport) serveBatch(w http.ResponseWriter, r *http.Request, from ed25519.PublicKey, body []byte) {
	calls, err := decodeBatch(body)
	if err != nil {
		plain(w, http.StatusBadRequest, err.Error())
		return
	}
	replies := make([]peer.Reply, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		if !coalesces(c.command) {
			replies[i] = peer.Reply{Status: http.StatusBadRequest, Body: []byte("command not allowed in a batch: " + c.command)}
			continue
		}
		t.mu.RLock()
		h, ok := t.handlers[c.command]
		t.mu.RUnlock()
		if !ok {
			replies[i] = peer.Reply{Status: http.StatusNotFound, Body: []byte("unknown peer command: " + c.command)}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = t.run(r.Context(), c.command, h, from, c.body)
		}()
	}
	wg.Wait()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	w.Write(encodeBatchReply(replies))
}
