package onionclient

import (
	"crypto/ecdh"

	"github.com/snodebox/snodebox/netstack/identity"
)

func ecdhKey(k *identity.Keys) (*ecdh.PrivateKey, error) {
	return ecdh.X25519().NewPrivateKey(k.X25519Priv[:])
}
