// Package onionreq is the onion-request wire format shared by the node
// (netstack/onion) and clients (netstack/onion/onionclient): the per-layer
// cryptography of spec §8.1, the entry and node-to-node framings of §8.2 and
// §8.6, and the classification of a decrypted layer of §8.3.
package onionreq

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/chacha20poly1305"
)

// EncType is a layer's encryption (spec §8.1 `enc_type`).
type EncType uint8

const (
	// AESGCM is the default when enc_type is absent (Desktop).
	AESGCM EncType = iota
	// XChaCha20 is XChaCha20-Poly1305-IETF (libsession's default).
	XChaCha20
	// AESCBC is accepted by storage servers only; no client sends it.
	AESCBC
)

// ParseEncType accepts the names and aliases of spec §8.1; "" is AES-GCM.
func ParseEncType(s string) (EncType, error) {
	switch s {
	case "", "aes-gcm", "gcm":
		return AESGCM, nil
	case "xchacha20", "xchacha20-poly1305":
		return XChaCha20, nil
	case "aes-cbc", "cbc":
		return AESCBC, nil
	}
	return 0, fmt.Errorf("unknown enc_type %q", s)
}

// String is the canonical wire name.
func (e EncType) String() string {
	switch e {
	case AESGCM:
		return "aes-gcm"
	case XChaCha20:
		return "xchacha20"
	case AESCBC:
		return "aes-cbc"
	}
	return fmt.Sprintf("enc_type(%d)", uint8(e))
}

// Layout sizes of spec §8.1.
const (
	gcmNonceSize = 12
	gcmTagSize   = 16
	xNonceSize   = chacha20poly1305.NonceSizeX
	xTagSize     = chacha20poly1305.Overhead
	cbcIVSize    = aes.BlockSize
)

// ErrDecrypt is any failure to open a layer; callers answer "Invalid
// ciphertext" without saying more (no padding or tag oracle detail).
var ErrDecrypt = errors.New("onion layer does not decrypt")

// SharedSecret is X25519(priv, pub). Low-order public keys, which would make
// the secret all zeros and the layer readable by anyone, are rejected.
func SharedSecret(priv *ecdh.PrivateKey, pub []byte) ([]byte, error) {
	pk, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("x25519 public key: %w", err)
	}
	s, err := priv.ECDH(pk)
	if err != nil {
		return nil, fmt.Errorf("x25519: %w", err)
	}
	return s, nil
}

var lokiKey = []byte("LOKI")

// DeriveKey turns the shared secret into the layer key of spec §8.1.
// clientPub is the ephemeral key A, nodePub the hop's key B; the order is the
// same in both directions.
func DeriveKey(e EncType, shared, clientPub, nodePub []byte) ([32]byte, error) {
	var k [32]byte
	switch e {
	case AESGCM:
		m := hmac.New(sha256.New, lokiKey)
		m.Write(shared)
		copy(k[:], m.Sum(nil))
	case XChaCha20:
		h, _ := blake2b.New256(nil) // unkeyed: cannot fail
		h.Write(shared)
		h.Write(clientPub)
		h.Write(nodePub)
		copy(k[:], h.Sum(nil))
	case AESCBC:
		if len(shared) != 32 {
			return k, fmt.Errorf("shared secret is %d bytes", len(shared))
		}
		copy(k[:], shared)
	default:
		return k, fmt.Errorf("derive key: %v", e)
	}
	return k, nil
}

// Cipher encrypts and decrypts one layer with its derived key.
type Cipher struct {
	enc   EncType
	aead  cipher.AEAD
	block cipher.Block
}

// NewCipher makes a Cipher from a derived key.
func NewCipher(e EncType, key [32]byte) (*Cipher, error) {
	c := &Cipher{enc: e}
	var err error
	switch e {
	case AESGCM:
		var b cipher.Block
		if b, err = aes.NewCipher(key[:]); err == nil {
			c.aead, err = cipher.NewGCM(b)
		}
	case XChaCha20:
		c.aead, err = chacha20poly1305.NewX(key[:])
	case AESCBC:
		c.block, err = aes.NewCipher(key[:])
	default:
		err = fmt.Errorf("unknown enc_type %d", e)
	}
	if err != nil {
		return nil, fmt.Errorf("%v cipher: %w", e, err)
	}
	return c, nil
}

// NodeCipher is the hop's side: its X25519 key b and the client's
// ephemeral public key A.
func NodeCipher(e EncType, nodePriv *ecdh.PrivateKey, clientPub []byte) (*Cipher, error) {
	s, err := SharedSecret(nodePriv, clientPub)
	if err != nil {
		return nil, err
	}
	k, err := DeriveKey(e, s, clientPub, nodePriv.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	return NewCipher(e, k)
}

// ClientCipher is the client's side: its ephemeral key a and the hop's
// public key B.
func ClientCipher(e EncType, clientPriv *ecdh.PrivateKey, nodePub []byte) (*Cipher, error) {
	s, err := SharedSecret(clientPriv, nodePub)
	if err != nil {
		return nil, err
	}
	k, err := DeriveKey(e, s, clientPriv.PublicKey().Bytes(), nodePub)
	if err != nil {
		return nil, err
	}
	return NewCipher(e, k)
}

// EncType is the cipher's encryption type.
func (c *Cipher) EncType() EncType { return c.enc }

// Overhead is how many bytes Seal adds to a plaintext of n bytes.
func (c *Cipher) Overhead(n int) int {
	switch c.enc {
	case AESGCM:
		return gcmNonceSize + gcmTagSize
	case XChaCha20:
		return xNonceSize + xTagSize
	}
	return cbcIVSize + aes.BlockSize - n%aes.BlockSize
}

// NonceSize is the length of the IV/nonce that starts a ciphertext.
func (c *Cipher) NonceSize() int {
	switch c.enc {
	case AESGCM:
		return gcmNonceSize
	case XChaCha20:
		return xNonceSize
	}
	return cbcIVSize
}

// Seal encrypts pt with a fresh random nonce.
func (c *Cipher) Seal(pt []byte) ([]byte, error) {
	nonce := make([]byte, c.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("read nonce: %w", err)
	}
	return c.SealNonce(pt, nonce)
}

// SealNonce encrypts pt with the given nonce (its first NonceSize bytes).
// Only tests and vectors choose nonces; everything else uses Seal.
func (c *Cipher) SealNonce(pt, nonce []byte) ([]byte, error) {
	ns := c.NonceSize()
	if len(nonce) < ns {
		return nil, fmt.Errorf("nonce is %d bytes, want %d", len(nonce), ns)
	}
	out := make([]byte, ns, ns+c.Overhead(len(pt))+len(pt))
	copy(out, nonce[:ns])
	if c.aead != nil {
		return c.aead.Seal(out, out[:ns], pt, nil), nil
	}
	pad := aes.BlockSize - len(pt)%aes.BlockSize
	out = append(out, pt...)
	out = append(out, bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(c.block, out[:ns]).CryptBlocks(out[ns:], out[ns:])
	return out, nil
}

// Open decrypts a layer. The result never aliases ct.
func (c *Cipher) Open(ct []byte) ([]byte, error) { return c.OpenAppend(nil, ct) }

// OpenAppend decrypts a layer, appending the plaintext to dst (which must
// not overlap ct), so a relay can reuse its buffers.
func (c *Cipher) OpenAppend(dst, ct []byte) ([]byte, error) {
	ns := c.NonceSize()
	if c.aead != nil {
		if len(ct) < ns+c.aead.Overhead() {
			return nil, ErrDecrypt
		}
		pt, err := c.aead.Open(dst, ct[:ns], ct[ns:], nil)
		if err != nil {
			return nil, ErrDecrypt
		}
		return pt, nil
	}
	body := ct[min(ns, len(ct)):]
	if len(ct) < ns+aes.BlockSize || len(body)%aes.BlockSize != 0 {
		return nil, ErrDecrypt
	}
	dst = slices.Grow(dst, len(body))
	pt := dst[len(dst) : len(dst)+len(body)]
	cipher.NewCBCDecrypter(c.block, ct[:ns]).CryptBlocks(pt, body)
	pad := int(pt[len(pt)-1])
	if pad == 0 || pad > aes.BlockSize {
		return nil, ErrDecrypt
	}
	for _, b := range pt[len(pt)-pad:] {
		if int(b) != pad {
			return nil, ErrDecrypt
		}
	}
	return dst[:len(dst)+len(pt)-pad], nil
}
