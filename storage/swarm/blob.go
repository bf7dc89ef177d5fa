package swarm

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/snodebox/snodebox/netstack/bencode"
	"github.com/snodebox/snodebox/storage"
)

// BlobVersion is the first byte of every sn.data blob (spec §6.5).
const BlobVersion = 0x01

// MaxBlobBytes is where upstream splits sn.data blobs; dumps and pushes use
// the smaller DumpBatchBytes so one lost batch costs little to resend.
const (
	MaxBlobBytes   = 9_000_000
	DumpBatchBytes = 1_000_000
)

// AppendBlobMessage appends one message in the 2.11.3 form
// [pubkey33, hash, timestamp, expiry, data, namespace] (a bt list) to b.
func AppendBlobMessage(b []byte, m storage.Message) []byte {
	b = append(b, 'l')
	b = appendStr(b, m.Owner.Bytes())
	b = appendStr(b, []byte(m.Hash))
	b = appendInt(b, m.Timestamp)
	b = appendInt(b, m.Expiry)
	b = appendStr(b, m.Data)
	b = appendInt(b, int64(m.Namespace))
	return append(b, 'e')
}

// EncodedSize is the bytes one message adds to a blob.
func EncodedSize(m storage.Message) int {
	return 2 + 3 + 33 + len(strconv.Itoa(len(m.Hash))) + 1 + len(m.Hash) +
		intLen(m.Timestamp) + intLen(m.Expiry) + len(strconv.Itoa(len(m.Data))) + 1 + len(m.Data) + intLen(int64(m.Namespace))
}

func intLen(n int64) int { return 2 + len(strconv.FormatInt(n, 10)) }

func appendStr(b, s []byte) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

func appendInt(b []byte, n int64) []byte {
	b = append(b, 'i')
	b = strconv.AppendInt(b, n, 10)
	return append(b, 'e')
}

// EncodeBlob writes one sn.data blob holding ms (2.11.3 form, namespaces
// included), however large.
func EncodeBlob(ms []storage.Message) []byte {
	b := []byte{BlobVersion, 'l'}
	for _, m := range ms {
		b = AppendBlobMessage(b, m)
	}
	return append(b, 'e')
}

// SplitMessages groups ms into runs that each encode to at most about
// maxBytes (a single larger message gets a run of its own).
func SplitMessages(ms []storage.Message, maxBytes int) [][]storage.Message {
	var out [][]storage.Message
	start, size := 0, 3
	for i, m := range ms {
		sz := EncodedSize(m)
		if i > start && size+sz > maxBytes {
			out = append(out, ms[start:i])
			start, size = i, 3
		}
		size += sz
	}
	if start < len(ms) {
		out = append(out, ms[start:])
	}
	return out
}

// EncodeBlobs splits ms into blobs of at most about maxBytes each (a single
// message larger than that still gets a blob of its own).
func EncodeBlobs(ms []storage.Message, maxBytes int) [][]byte {
	var out [][]byte
	var bw BlobWriter
	for _, m := range ms {
		if bw.Len() > 0 && bw.Len()+EncodedSize(m) > maxBytes {
			out = append(out, bw.Finish())
		}
		bw.Add(m)
	}
	if bw.Count() > 0 {
		out = append(out, bw.Finish())
	}
	return out
}

// BlobWriter builds one blob incrementally (dumps stream messages into it).
type BlobWriter struct {
	buf   []byte
	count int
}

// Add appends m.
func (w *BlobWriter) Add(m storage.Message) {
	if w.buf == nil {
		w.buf = append(w.buf, BlobVersion, 'l')
	}
	w.buf = AppendBlobMessage(w.buf, m)
	w.count++
}

// Len is the blob size so far (without the closing byte).
func (w *BlobWriter) Len() int { return len(w.buf) }

// Count is the number of messages added since the last Finish.
func (w *BlobWriter) Count() int { return w.count }

// Finish returns the blob and resets the writer.
func (w *BlobWriter) Finish() []byte {
	if w.buf == nil {
		w.buf = []byte{BlobVersion, 'l'}
	}
	b := append(w.buf, 'e')
	w.buf, w.count = nil, 0
	return b
}

// DecodeBlob reads an sn.data blob in either form: 5-element messages
// (before 2.11.3, namespace 0) or 6-element ones. Hashes are checked only for
// shape: a peer that sends a wrong hash harms only its own copy.
func DecodeBlob(blob []byte) ([]storage.Message, error) {
	if len(blob) == 0 {
		return nil, errors.New("sn.data blob is empty")
	}
	if blob[0] != BlobVersion {
		return nil, fmt.Errorf("sn.data blob version %d, want %d", blob[0], BlobVersion)
	}
	v, err := bencode.Unmarshal(blob[1:])
	if err != nil {
		return nil, fmt.Errorf("sn.data blob: %w", err)
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("sn.data blob: want a list, got %T", v)
	}
	out := make([]storage.Message, 0, len(list))
	for i, e := range list {
		m, err := decodeBlobMessage(e)
		if err != nil {
			return nil, fmt.Errorf("sn.data message %d: %w", i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func decodeBlobMessage(v any) (storage.Message, error) {
	var m storage.Message
	l, ok := v.([]any)
	if !ok || (len(l) != 5 && len(l) != 6) {
		return m, errors.New("want a list of 5 or 6 elements")
	}
	pk, ok := l[0].([]byte)
	if !ok {
		return m, errors.New("pubkey is not a string")
	}
	owner, err := storage.AccountFromBytes(pk)
	if err != nil {
		return m, err
	}
	hash, ok := l[1].([]byte)
	if !ok || len(hash) == 0 {
		return m, errors.New("hash is not a non-empty string")
	}
	ts, ok1 := l[2].(int64)
	exp, ok2 := l[3].(int64)
	if !ok1 || !ok2 {
		return m, errors.New("timestamp and expiry must be integers")
	}
	data, ok := l[4].([]byte)
	if !ok {
		return m, errors.New("data is not a string")
	}
	var ns int64
	if len(l) == 6 {
		if ns, ok = l[5].(int64); !ok || ns < -32768 || ns > 32767 {
			return m, errors.New("namespace is not a 16-bit integer")
		}
	}
	m = storage.Message{
		Hash: string(hash), Owner: owner, Namespace: storage.Namespace(ns),
		Timestamp: ts, Expiry: exp, Data: bytes.Clone(data),
	}
	return m, nil
}
