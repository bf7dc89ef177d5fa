// Package storage holds the swarm message model shared by the store engine,
// the RPC semantics and replication: accounts, messages, namespaces, the
// message hash (spec §5) and the Store interface every engine implements.
package storage

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/crypto/blake2b"
)

// Account is a 33-byte Session account: network/type byte + 32-byte key.
type Account struct {
	Type byte
	Key  [32]byte
}

// ParseAccount reads a 66-hex account id. (64-hex testnet ids are not
// accepted: snodebox runs mainnet rules.)
func ParseAccount(s string) (Account, error) {
	var a Account
	if len(s) != 66 {
		return a, fmt.Errorf("pubkey must be 66 hex characters, got %d", len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return a, fmt.Errorf("pubkey is not hex: %w", err)
	}
	a.Type = b[0]
	copy(a.Key[:], b[1:])
	return a, nil
}

// AccountFromBytes reads a 33-byte raw account (bt encodings).
func AccountFromBytes(b []byte) (Account, error) {
	var a Account
	if len(b) != 33 {
		return a, fmt.Errorf("pubkey must be 33 bytes, got %d", len(b))
	}
	a.Type = b[0]
	copy(a.Key[:], b[1:])
	return a, nil
}

// Bytes is the 33-byte form.
func (a Account) Bytes() []byte {
	b := make([]byte, 33)
	b[0] = a.Type
	copy(b[1:], a.Key[:])
	return b
}

// Hex is the 66-char lowercase form (PUBKEY_HEX in signed strings).
func (a Account) Hex() string { return hex.EncodeToString(a.Bytes()) }

func (a Account) String() string { return a.Hex() }

// Namespace is the signed 16-bit namespace of spec §2.2.
type Namespace int16

// SigString is the namespace as written in signed strings and hashes: empty
// for the default namespace 0, decimal otherwise.
func (n Namespace) SigString() string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(int(n))
}

// PublicInbox: anyone may store without auth.
func (n Namespace) PublicInbox() bool { return n%10 == 0 }

// PublicOutbox: owner-auth store, no-auth retrieve, one message only.
func (n Namespace) PublicOutbox() bool { return n < 0 && (-int(n))%20 == 1 }

// NoAuthRetrieve: public outboxes and −10 (legacy closed groups).
func (n Namespace) NoAuthRetrieve() bool { return n == -10 || n.PublicOutbox() }

// Unrevocable: a revoked subaccount may still retrieve.
func (n Namespace) Unrevocable() bool { return n < 0 && (-int(n))%100 == 11 }

// MessageHash is spec §5: unpadded base64 of
// BLAKE2b-256(type ‖ key32 ‖ NS ‖ data), NS empty for namespace 0.
func MessageHash(a Account, ns Namespace, data []byte) string {
	h, _ := blake2b.New256(nil)
	h.Write([]byte{a.Type})
	h.Write(a.Key[:])
	h.Write([]byte(ns.SigString()))
	h.Write(data)
	return base64.RawStdEncoding.EncodeToString(h.Sum(nil))
}

// ValidHash reports whether s looks like a message hash (43 chars of b64).
func ValidHash(s string) bool {
	if len(s) != 43 {
		return false
	}
	_, err := base64.RawStdEncoding.DecodeString(s)
	return err == nil
}

// Message is one stored message. Times are Unix milliseconds.
type Message struct {
	Hash      string
	Owner     Account
	Namespace Namespace
	Timestamp int64
	Expiry    int64
	Data      []byte
}

// ExpiryMode says how a per-message expiry update may move the expiry.
type ExpiryMode int

const (
	ExpirySet     ExpiryMode = iota // set to the given value
	ExpiryShorten                   // only lower
	ExpiryExtend                    // only raise
)

// ExpiryUpdate is the outcome of Store.UpdateExpiry for one hash that exists.
type ExpiryUpdate struct {
	Hash    string
	Expiry  int64 // the expiry now in force
	Changed bool
}

// Errors the RPC layer maps onto spec status codes.
var (
	// ErrFull: the database reached its size cap; stores answer query_failure.
	ErrFull = errors.New("storage: database is full")
	// ErrClosed: the store is shutting down.
	ErrClosed = errors.New("storage: closed")
)

// AllNamespaces selects every namespace in the *All/*Before operations.
const AllNamespaces = true

// NSFilter selects one namespace or all of them.
type NSFilter struct {
	All bool
	NS  Namespace
}

// Stats is what the status page and metrics show.
type Stats struct {
	Messages  int64
	Accounts  int64
	DBBytes   int64 // file size on disk
	CapBytes  int64 // configured cap
	Fsyncs    int64 // commits that reached the disk since open
	Stores    int64 // messages inserted since open
	Pruned    int64 // expired messages removed since open
	LastPrune int64 // unix ms
}

// Store is the message engine. Every method is safe for concurrent use.
// Store returns only after the write is durable: an acknowledged message
// survives a power cut. Implementations batch concurrent writes so they
// share fsyncs.
type Store interface {
	// Store inserts m. If a message with the same hash exists, its expiry is
	// raised when m's is later and already is true. When m's namespace is a
	// public outbox every other message of the owner in that namespace is
	// removed. ErrFull when the size cap is reached.
	Store(ctx context.Context, m Message) (already bool, expiry int64, err error)

	// StoreBatch inserts many messages, ignoring duplicates (sn.data pushes
	// and swarm dumps). It returns how many were new.
	StoreBatch(ctx context.Context, ms []Message) (inserted int, err error)

	// Retrieve returns the owner's messages in ns in insertion order,
	// starting after lastHash when that hash belongs to the same owner and
	// namespace (from the start otherwise). It stops after maxCount messages
	// (0 = no count limit) or when the next message would push the size
	// accounting of spec §4.2 past maxSize; at least one message is returned
	// when any exists. more reports whether messages remain.
	Retrieve(ctx context.Context, owner Account, ns Namespace, lastHash string, maxCount int, maxSize int64) (msgs []Message, more bool, err error)

	// Delete removes the owner's messages with these hashes (any namespace)
	// and returns the deleted hashes sorted.
	Delete(ctx context.Context, owner Account, hashes []string) ([]string, error)

	// DeleteAll removes the owner's messages in ns (or all namespaces).
	// The result maps namespace → sorted deleted hashes.
	DeleteAll(ctx context.Context, owner Account, ns NSFilter) (map[Namespace][]string, error)

	// DeleteBefore removes the owner's messages in ns with timestamp <= before.
	DeleteBefore(ctx context.Context, owner Account, ns NSFilter, before int64) (map[Namespace][]string, error)

	// ExpireAll lowers to expiry every expiry of the owner's messages in ns
	// that is later than it; it returns the changed hashes by namespace.
	ExpireAll(ctx context.Context, owner Account, ns NSFilter, expiry int64) (map[Namespace][]string, error)

	// UpdateExpiry applies expiries[i] to hashes[i] of the owner under mode
	// and reports each hash that exists (sorted by hash).
	UpdateExpiry(ctx context.Context, owner Account, hashes []string, expiries []int64, mode ExpiryMode) ([]ExpiryUpdate, error)

	// GetExpiries returns the current expiry of each existing hash.
	GetExpiries(ctx context.Context, owner Account, hashes []string) (map[string]int64, error)

	// Revoke adds subaccount tokens to the owner's revocation list (max 50,
	// oldest dropped, re-revoking refreshes); Unrevoke removes them and
	// returns how many were present; Revoked lists them; IsRevoked checks one.
	Revoke(ctx context.Context, owner Account, tokens [][]byte, now int64) error
	Unrevoke(ctx context.Context, owner Account, tokens [][]byte) (int, error)
	Revoked(ctx context.Context, owner Account) ([][]byte, error)
	IsRevoked(ctx context.Context, owner Account, token []byte) (bool, error)

	// Prune deletes messages whose expiry <= now and returns how many.
	Prune(ctx context.Context, now int64) (int, error)

	// ForEach calls fn for every stored message whose owner's swarm-space
	// position (swarm.Position) lies in (lower, upper] on the u64 ring
	// (lower == upper means the whole ring), in batches, without holding a
	// write lock. fn returning an error stops the walk.
	ForEach(ctx context.Context, lower, upper uint64, fn func(Message) error) error

	// DropRange deletes messages whose owner position lies in (lower, upper]
	// (after handover to their new swarm). It returns how many.
	DropRange(ctx context.Context, lower, upper uint64) (int, error)

	Stats() Stats
	Close() error
}

// Position is spec §6.1 step 1: XOR the four 8-byte words of the key and read
// the result big-endian. It lives here (not in the swarm package) because the
// store indexes messages by it for range dumps.
func Position(key [32]byte) uint64 {
	var r uint64
	for i := 0; i < 32; i += 8 {
		r ^= uint64(key[i])<<56 | uint64(key[i+1])<<48 | uint64(key[i+2])<<40 | uint64(key[i+3])<<32 |
			uint64(key[i+4])<<24 | uint64(key[i+5])<<16 | uint64(key[i+6])<<8 | uint64(key[i+7])
	}
	return r
}

// InRange reports whether pos lies in (lower, upper] on the u64 ring;
// lower == upper is the whole ring.
func InRange(pos, lower, upper uint64) bool {
	if lower == upper {
		return true
	}
	if lower < upper {
		return pos > lower && pos <= upper
	}
	return pos > lower || pos <= upper
}
