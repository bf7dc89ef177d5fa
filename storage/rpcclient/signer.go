// Package rpcclient speaks the Session storage RPC as a client: it signs
// requests for an account (spec §3), builds every method's JSON params
// (spec §4) and sends them to a node over HTTPS.
package rpcclient

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/storage"
)

// Subaccount flag bits of spec §3.1 (token byte 1).
const (
	FlagRead      byte = 0x01
	FlagWrite     byte = 0x02
	FlagDelete    byte = 0x04
	FlagAnyPrefix byte = 0x08
)

// Signer signs requests for one account.
type Signer struct {
	// Account is the account the requests act on.
	Account storage.Account
	// key signs requests: the account key, or the subaccount key.
	key ed25519.PrivateKey
	// edPub is sent as pubkey_ed25519 for 05 Session ID accounts.
	edPub ed25519.PublicKey
	// token/tokenSig are set for subaccount signers.
	token    []byte
	tokenSig []byte
}

// NewGroup makes a signer for a group-style account: prefix 03 followed by
// the Ed25519 public key of seed; the node verifies with that key directly.
func NewGroup(seed []byte) (*Signer, error) { return NewEd25519(0x03, seed) }

// NewEd25519 makes a signer for an account whose 32 key bytes are the
// Ed25519 public key of seed, with any prefix byte. (Prefix 05 here gives an
// account the node also verifies directly, as upstream network tests do.)
func NewEd25519(prefix byte, seed []byte) (*Signer, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("ed25519 seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	s := &Signer{key: priv}
	s.Account.Type = prefix
	copy(s.Account.Key[:], priv.Public().(ed25519.PublicKey))
	return s, nil
}

// NewSession makes a signer for a Session ID: 05 followed by the X25519
// form of seed's Ed25519 public key. Requests carry pubkey_ed25519 so the
// node can check the conversion and verify (spec §3.1 step 2).
func NewSession(seed []byte) (*Signer, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("ed25519 seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	x, err := identity.EdPubToX25519(pub)
	if err != nil {
		return nil, fmt.Errorf("session id: %w", err)
	}
	return &Signer{Account: storage.Account{Type: 0x05, Key: x}, key: priv, edPub: pub}, nil
}

// Pubkey is the 66-hex account id.
func (s *Signer) Pubkey() string { return s.Account.Hex() }

// Sign signs msg with the request key (the subaccount key for subaccount
// signers).
func (s *Signer) Sign(msg []byte) []byte { return identity.Sign(s.key, msg) }

// SignB64 is Sign as padded base64, the JSON form.
func (s *Signer) SignB64(msg string) string {
	return base64.StdEncoding.EncodeToString(s.Sign([]byte(msg)))
}

// Token makes a 36-byte subaccount token for the Ed25519 key sub with the
// given flags, and the owner's signature over it (spec §3.1 step 3). The
// owner must be an Ed25519-keyed signer (03 group, or 05 with pubkey_ed25519).
func (s *Signer) Token(sub ed25519.PublicKey, flags byte) (token, sig []byte, err error) {
	if len(sub) != ed25519.PublicKeySize {
		return nil, nil, errors.New("subaccount key must be 32 bytes")
	}
	if s.token != nil {
		return nil, nil, errors.New("a subaccount cannot issue subaccount tokens")
	}
	token = make([]byte, 36)
	token[0] = s.Account.Type
	token[1] = flags
	copy(token[4:], sub)
	return token, identity.Sign(s.key, token), nil
}

// Subaccount returns a signer that acts on the owner's account with the
// subaccount key subSeed, presenting token and tokenSig (from Token).
func (s *Signer) Subaccount(subSeed, token, tokenSig []byte) (*Signer, error) {
	if len(subSeed) != ed25519.SeedSize {
		return nil, fmt.Errorf("subaccount seed is %d bytes, want %d", len(subSeed), ed25519.SeedSize)
	}
	if len(token) != 36 || len(tokenSig) != ed25519.SignatureSize {
		return nil, errors.New("subaccount token must be 36 bytes and its signature 64")
	}
	return &Signer{
		Account:  s.Account,
		key:      ed25519.NewKeyFromSeed(subSeed),
		edPub:    s.edPub,
		token:    append([]byte(nil), token...),
		tokenSig: append([]byte(nil), tokenSig...),
	}, nil
}

// authFields adds pubkey, signature and the optional pubkey_ed25519 /
// subaccount fields for the signed string msg.
func (s *Signer) authFields(p map[string]any, msg string) {
	p["pubkey"] = s.Pubkey()
	p["signature"] = s.SignB64(msg)
	if s.edPub != nil {
		p["pubkey_ed25519"] = hex.EncodeToString(s.edPub)
	}
	if s.token != nil {
		p["subaccount"] = base64.StdEncoding.EncodeToString(s.token)
		p["subaccount_sig"] = base64.StdEncoding.EncodeToString(s.tokenSig)
	}
}
