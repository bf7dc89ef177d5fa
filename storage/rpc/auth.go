package rpc

import (
	"context"
	"encoding/hex"

	"github.com/snodebox/snodebox/netstack/identity"
	"github.com/snodebox/snodebox/storage"
)

// Subaccount flags (token byte 1), spec §3.1.
const (
	accessRead      byte = 0x01
	accessWrite     byte = 0x02
	accessDelete    byte = 0x04
	accessAnyPrefix byte = 0x08
)

// auth is the account and signature part every signed request carries.
type auth struct {
	account  storage.Account
	edPub    []byte // pubkey_ed25519 (05 accounts), 32 bytes or nil
	sig      []byte // request signature, 64 bytes or nil
	token    []byte // subaccount token, 36 bytes or nil
	tokenSig []byte
}

// loadPubkey reads the account from "pubkey", or its legacy alias "pubKey"
// when alias is set (exactly one of them).
func (a *auth) loadPubkey(p *params, alias bool) error {
	pk, hasPK, err := p.str("pubkey")
	if err != nil {
		return err
	}
	if alias {
		alt, hasAlt, err := p.str("pubKey")
		if err != nil {
			return err
		}
		if hasPK && hasAlt {
			return perr("Cannot specify both 'pubkey' and 'pubKey'")
		}
		if hasAlt {
			pk, hasPK = alt, true
		}
	}
	if !hasPK {
		return perr("Required field 'pubkey' missing")
	}
	var acct storage.Account
	switch {
	case len(pk) == 66:
		acct, err = storage.ParseAccount(pk)
	case len(pk) == 33 && p.isBT(): // bt carries the raw bytes
		acct, err = storage.AccountFromBytes([]byte(pk))
	default:
		err = perr("wrong length")
	}
	if err != nil {
		return perr("Pubkey must be 66 hex digits (33 bytes) long")
	}
	a.account = acct
	return nil
}

// loadSignature reads the required signature and the optional
// pubkey_ed25519 (only for 05 accounts).
func (a *auth) loadSignature(p *params) error {
	sig, ok, err := p.sig64("signature", "signature")
	if err != nil {
		return err
	}
	if !ok {
		return perr("Required field 'signature' missing")
	}
	a.sig = sig
	ed, ok, err := p.str("pubkey_ed25519")
	if err != nil {
		return err
	}
	if ok {
		if a.account.Type != 0x05 {
			return perr("pubkey_ed25519 is only permitted for 05[...] pubkeys")
		}
		switch len(ed) {
		case 64:
			b, err := hex.DecodeString(ed)
			if err != nil {
				return perr("invalid pubkey_ed25519: value is not hex")
			}
			a.edPub = b
		case 32:
			a.edPub = []byte(ed)
		default:
			return perr("Invalid pubkey_ed25519: expected 64 hex char or 32 byte pubkey")
		}
	}
	return nil
}

// loadSubaccount reads subaccount + subaccount_sig (both or neither).
func (a *auth) loadSubaccount(p *params) error {
	tok, ok, err := p.str("subaccount")
	if err != nil {
		return err
	}
	if !ok || tok == "" {
		return nil
	}
	if !p.has("subaccount_sig") {
		return perr("invalid subaccount: subaccount_sig is required when using subaccount")
	}
	t, valid := decodeToken(tok, p.isBT())
	if !valid {
		if p.isBT() {
			return perr("invalid subaccount token: invalid token length")
		}
		return perr("invalid subaccount: expected base64 or hex-encoded subaccount token")
	}
	sig, _, err := p.sig64("subaccount_sig", "subaccount signature")
	if err != nil {
		return err
	}
	a.token, a.tokenSig = t, sig
	return nil
}

// loadSigned is loadPubkey + loadSignature + (optionally) loadSubaccount.
func (a *auth) loadSigned(p *params, alias, subaccount bool) error {
	if err := a.loadPubkey(p, alias); err != nil {
		return err
	}
	if err := a.loadSignature(p); err != nil {
		return err
	}
	if subaccount {
		return a.loadSubaccount(p)
	}
	return nil
}

// btFields writes the auth fields of a forwarded request (spec §6.4).
func (a *auth) btFields(d map[string]any) {
	d["pubkey"] = a.account.Bytes()
	if a.sig != nil {
		d["signature"] = a.sig
	}
	if a.edPub != nil {
		d["pubkey_ed25519"] = a.edPub
	}
	if a.token != nil {
		d["subaccount"] = a.token
		d["subaccount_sig"] = a.tokenSig
	}
}

// verify is spec §3.1: choose the key (05 + pubkey_ed25519 must convert to
// the account), check a subaccount token (not revoked unless skipRevoke,
// prefix, flags, owner's signature), then verify the request signature over
// the concatenated parts.
func (s *Server) verify(ctx context.Context, a *auth, required byte, skipRevoke bool, parts ...[]byte) bool {
	if a.sig == nil {
		return false
	}
	key := a.account.Key[:]
	if a.account.Type == 0x05 && a.edPub != nil {
		x, err := identity.EdPubToX25519(a.edPub)
		if err != nil || x != a.account.Key {
			return false
		}
		key = a.edPub
	}
	if a.token != nil {
		if !skipRevoke {
			revoked, err := s.cfg.Store.IsRevoked(ctx, a.account, a.token)
			if err != nil {
				s.cfg.Logger.Warn("subaccount revocation check failed", "err", err)
				return false
			}
			if revoked {
				return false
			}
		}
		flags := a.token[1]
		if a.token[0] != a.account.Type && flags&accessAnyPrefix == 0 {
			return false
		}
		if flags&required != required {
			return false
		}
		if !identity.Verify(key, a.token, a.tokenSig) {
			return false
		}
		key = a.token[4:36]
	}
	var msg []byte
	for _, p := range parts {
		msg = append(msg, p...)
	}
	return identity.Verify(key, msg, a.sig)
}
