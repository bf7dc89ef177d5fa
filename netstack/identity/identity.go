// Package identity holds a node's keys: the Ed25519 identity (signs RPC
// answers, names the node as an onion destination and in peer TLS) and the
// X25519 key derived from it (onion decryption), per spec §9.
package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/curve25519"
)

// SeedFile is the name of the identity file inside a key directory. It holds
// the 32-byte Ed25519 seed, nothing else, so a backup is a plain file copy.
const SeedFile = "ed25519.seed"

// Keys is a node identity. The secret halves are never logged: Keys has no
// String method that could leak them and LogValue prints public keys only.
type Keys struct {
	Ed25519Priv ed25519.PrivateKey
	Ed25519Pub  ed25519.PublicKey
	X25519Priv  [32]byte
	X25519Pub   [32]byte
}

// FromSeed derives the whole identity from an Ed25519 seed.
func FromSeed(seed []byte) (*Keys, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("identity seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	k := &Keys{Ed25519Priv: priv, Ed25519Pub: pub}
	k.X25519Priv = EdSeedToX25519(seed)
	xpub, err := curve25519.X25519(k.X25519Priv[:], curve25519.Basepoint)
	if err != nil {
		return nil, fmt.Errorf("derive x25519 public key: %w", err)
	}
	copy(k.X25519Pub[:], xpub)
	return k, nil
}

// Generate makes a fresh identity.
func Generate() (*Keys, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("read random seed: %w", err)
	}
	return FromSeed(seed)
}

// Seed returns the 32-byte seed (for backups).
func (k *Keys) Seed() []byte { return k.Ed25519Priv.Seed() }

// Ed25519Hex is the node's public identity as lowercase hex.
func (k *Keys) Ed25519Hex() string { return hex.EncodeToString(k.Ed25519Pub) }

// X25519Hex is the node's onion key as lowercase hex.
func (k *Keys) X25519Hex() string { return hex.EncodeToString(k.X25519Pub[:]) }

// Sign signs msg with the node's Ed25519 key.
func (k *Keys) Sign(msg []byte) []byte { return Sign(k.Ed25519Priv, msg) }

// Load reads the identity from dir, or creates and persists a new one when
// none exists. The seed file is written 0600 through a temporary file and a
// rename so a power cut cannot leave a half-written key.
func Load(dir string) (k *Keys, created bool, err error) {
	path := filepath.Join(dir, SeedFile)
	seed, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, err := FromSeed(seed)
		if err != nil {
			return nil, false, fmt.Errorf("load identity %s: %w", path, err)
		}
		return k, false, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, false, fmt.Errorf("load identity %s: %w", path, err)
	}
	k, err = Generate()
	if err != nil {
		return nil, false, err
	}
	if err := Save(dir, k); err != nil {
		return nil, false, err
	}
	return k, true, nil
}

// Save writes the seed into dir (0700) as SeedFile (0600), atomically.
func Save(dir string, k *Keys) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create key dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, SeedFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write identity %s: %w", tmp, err)
	}
	_, werr := f.Write(k.Seed())
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write identity %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install identity %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// SameKeys reports whether two identities are the same.
func SameKeys(a, b *Keys) bool { return bytes.Equal(a.Seed(), b.Seed()) }

// EdSeedToX25519 is libsodium's crypto_sign_ed25519_sk_to_curve25519: the
// clamped first half of SHA-512(seed).
func EdSeedToX25519(seed []byte) [32]byte {
	h := sha512.Sum512(seed)
	var out [32]byte
	copy(out[:], h[:32])
	out[0] &= 248
	out[31] &= 127
	out[31] |= 64
	return out
}

// EdPubToX25519 is libsodium's crypto_sign_ed25519_pk_to_curve25519: the
// Montgomery u-coordinate of the Edwards point. It rejects keys that are not
// valid points, as libsodium does.
func EdPubToX25519(pub []byte) ([32]byte, error) {
	var out [32]byte
	if len(pub) != ed25519.PublicKeySize {
		return out, fmt.Errorf("ed25519 public key is %d bytes, want 32", len(pub))
	}
	p, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return out, fmt.Errorf("ed25519 public key is not a curve point: %w", err)
	}
	copy(out[:], p.BytesMontgomery())
	return out, nil
}

// zbase32 is the alphabet of Oxen `.snode` addresses.
var zbase32 = base32.NewEncoding("ybndrfg8ejkmcpqxot1uwisza345h769").WithPadding(base32.NoPadding)

// SnodeAddress is `<base32z(pubkey)>.snode`, the name spec §6.2 publishes.
func SnodeAddress(legacyPub []byte) string { return zbase32.EncodeToString(legacyPub) + ".snode" }

// Base32z encodes b in z-base-32 without padding.
func Base32z(b []byte) string { return zbase32.EncodeToString(b) }

// Certificates returns the TLS certificates a node presents: an Ed25519
// certificate for its identity key first (peers verify it against the
// registry; Go clients pick it), then an ECDSA P-256 one for clients that do
// not speak Ed25519 TLS (browsers). Both are self-signed, as Session clients
// do not verify node certificates.
func (k *Keys) Certificates() ([]tls.Certificate, error) {
	edCert, err := selfSigned(k.Ed25519Pub, k.Ed25519Priv, "snode-"+k.Ed25519Hex()[:16])
	if err != nil {
		return nil, fmt.Errorf("ed25519 certificate: %w", err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ecdsa key: %w", err)
	}
	ecCert, err := selfSigned(&ecKey.PublicKey, ecKey, "snode-"+k.Ed25519Hex()[:16])
	if err != nil {
		return nil, fmt.Errorf("ecdsa certificate: %w", err)
	}
	return []tls.Certificate{edCert, ecCert}, nil
}

// PeerCertificate is the Ed25519 certificate a node uses as a TLS client when
// it talks to other nodes (mutual TLS on /sn/v1/).
func (k *Keys) PeerCertificate() (tls.Certificate, error) {
	return selfSigned(k.Ed25519Pub, k.Ed25519Priv, "snode-"+k.Ed25519Hex()[:16])
}

func selfSigned(pub any, priv any, cn string) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Unix(0, 0), // boards boot without a clock
		NotAfter:              time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost", cn},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// PeerKey extracts the Ed25519 identity from a peer's TLS certificate chain.
func PeerKey(state *tls.ConnectionState) (ed25519.PublicKey, error) {
	if state == nil || len(state.PeerCertificates) == 0 {
		return nil, errors.New("peer presented no certificate")
	}
	pub, ok := state.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("peer certificate key is %T, want ed25519", state.PeerCertificates[0].PublicKey)
	}
	return pub, nil
}
