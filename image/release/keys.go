// Package release is the signed update contract shared by `snodectl
// release` (which makes and signs releases) and the update agent in snoded
// (which checks and installs them): the release manifest, its minisign
// signature, key files and the admin push statement.
//
// Signatures are minisign (Ed25519) through aead.dev/minisign, a small,
// maintained implementation of the format by a cryptography engineer: users
// check a download with the standard `minisign -Vm manifest.json -P KEY`,
// and the key and signature files are the same bytes the minisign tool
// reads and writes, which hand-written format code would have to prove.
package release

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"aead.dev/minisign"
)

// Key file names `release keygen` writes.
const (
	PublicKeyFile = "snodebox.pub"
	SecretKeyFile = "snodebox.key"
)

// Keygen writes a key pair into dir: the public key as minisign writes it,
// and the secret key encrypted with password (minisign's scrypt box), or
// in the clear when password is "".
func Keygen(dir, password string) (minisign.PublicKey, error) {
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		return pub, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return pub, err
	}
	for _, f := range []string{PublicKeyFile, SecretKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return pub, fmt.Errorf("%s already exists: not overwriting a key", filepath.Join(dir, f))
		}
	}
	var sec []byte
	if password != "" {
		if sec, err = minisign.EncryptKey(password, priv); err != nil {
			return pub, err
		}
	} else if sec, err = priv.MarshalText(); err != nil {
		return pub, err
	}
	pubText, err := pub.MarshalText()
	if err != nil {
		return pub, err
	}
	if err := os.WriteFile(filepath.Join(dir, SecretKeyFile), sec, 0o600); err != nil {
		return pub, err
	}
	return pub, os.WriteFile(filepath.Join(dir, PublicKeyFile), pubText, 0o644)
}

// LoadSecretKey reads a secret key file; password is asked for only when the
// file is encrypted.
func LoadSecretKey(path string, password func() (string, error)) (minisign.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return minisign.PrivateKey{}, fmt.Errorf("secret key: %w", err)
	}
	if minisign.IsEncrypted(data) {
		if password == nil {
			return minisign.PrivateKey{}, fmt.Errorf("secret key %s is password protected", path)
		}
		pw, err := password()
		if err != nil {
			return minisign.PrivateKey{}, err
		}
		k, err := minisign.DecryptKey(pw, data)
		if err != nil {
			return k, fmt.Errorf("secret key %s: wrong password or damaged file: %w", path, err)
		}
		return k, nil
	}
	var k minisign.PrivateKey
	if err := k.UnmarshalText(data); err != nil {
		return k, fmt.Errorf("secret key %s: %w", path, err)
	}
	return k, nil
}

// PublicOf is a secret key's public half.
func PublicOf(k minisign.PrivateKey) minisign.PublicKey {
	p, _ := k.Public().(minisign.PublicKey)
	return p
}

// KeyLine is a public key as one line: the base64 form minisign's -P takes.
func KeyLine(p minisign.PublicKey) string { return p.String() }

// ParsePublicKeys reads public keys from text: minisign .pub files (an
// "untrusted comment:" line, then the key) or bare key lines, several
// allowed (key rotation). Blank lines and # comments are skipped.
func ParsePublicKeys(text []byte) ([]minisign.PublicKey, error) {
	var out []minisign.PublicKey
	for n, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "untrusted comment:") {
			continue
		}
		var k minisign.PublicKey
		if err := k.UnmarshalText([]byte(line)); err != nil {
			return nil, fmt.Errorf("public key on line %d: %w", n+1, err)
		}
		out = append(out, k)
	}
	return out, nil
}

// ReadPublicKeys reads ParsePublicKeys from a file.
func ReadPublicKeys(path string) ([]minisign.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := ParsePublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no public key", path)
	}
	return keys, nil
}

// KeysText writes keys one per line, for a slot's key files.
func KeysText(keys []minisign.PublicKey) []byte {
	var b bytes.Buffer
	seen := map[uint64]bool{}
	for _, k := range keys {
		if seen[k.ID()] {
			continue
		}
		seen[k.ID()] = true
		fmt.Fprintf(&b, "%s\n", k.String())
	}
	return b.Bytes()
}

// Errors a check can end in; the agent shows them in words.
var (
	ErrUnknownKey   = errors.New("signed by a key this node does not trust")
	ErrBadSignature = errors.New("the signature does not match")
)

// Verify checks sig over message against keys and returns the key used.
func Verify(keys []minisign.PublicKey, message, sig []byte) (minisign.PublicKey, error) {
	var s minisign.Signature
	if err := s.UnmarshalText(sig); err != nil {
		return minisign.PublicKey{}, fmt.Errorf("%w: unreadable signature: %v", ErrBadSignature, err)
	}
	for _, k := range keys {
		if k.ID() == s.KeyID {
			if minisign.Verify(k, message, sig) {
				return k, nil
			}
			return k, ErrBadSignature
		}
	}
	return minisign.PublicKey{}, fmt.Errorf("%w (key id %016X)", ErrUnknownKey, s.KeyID)
}
