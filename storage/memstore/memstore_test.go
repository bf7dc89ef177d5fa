package memstore_test

import (
	"testing"

	"github.com/snodebox/snodebox/storage"
	"github.com/snodebox/snodebox/storage/memstore"
	"github.com/snodebox/snodebox/storage/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store { return memstore.New() })
}

func TestSizeCap(t *testing.T) {
	storetest.RunFull(t, func(t *testing.T, capBytes int64) storage.Store { return memstore.NewWithCap(capBytes) })
}
