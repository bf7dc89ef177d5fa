package assemble

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"aead.dev/minisign"

	"github.com/snodebox/snodebox/image/release"
	"github.com/snodebox/snodebox/image/sdcard"
	"github.com/snodebox/snodebox/image/slot"
)

// ReleaseOptions are the inputs of one signed release.
type ReleaseOptions struct {
	Board         string
	RollbackIndex uint64
	Snoded        string
	Key           minisign.PrivateKey
	// ReleaseKeys the new system trusts besides the signing key's own
	// public half (always included, so a release never locks its own
	// publisher out); AdminKeys for pushes.
	ReleaseKeys, AdminKeys []byte
	SlotBootArgs           string
	Out                    string // release directory
}

// Release builds the slot payload for a board and writes a signed release
// into o.Out: manifest.json, manifest.json.minisig and slot.img.
func (b *Builder) Release(ctx context.Context, o ReleaseOptions) (release.Manifest, error) {
	var m release.Manifest
	if _, ok := KernelBoards[o.Board]; !ok {
		return m, fmt.Errorf("unknown board %q (qemu-arm64, rpi3, rpi4)", o.Board)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return m, err
	}
	work, err := os.MkdirTemp(o.Out, ".release-")
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(work)
	keys := append([]byte(release.KeyLine(release.PublicOf(o.Key))+"\n"), o.ReleaseKeys...)
	slotDir := filepath.Join(work, "slot")
	b.progressf("release: %s %s: slot payload\n", o.Board, b.version())
	sm, _, err := b.SlotTree(ctx, SlotSpec{Board: o.Board, Snoded: o.Snoded, BootArgs: o.SlotBootArgs, ReleaseKeys: keys, AdminKeys: o.AdminKeys}, slotDir)
	if err != nil {
		return m, err
	}
	if m, err = ReleaseFromSlot(ctx, slotDir, sm, b.version(), o); err != nil {
		return m, err
	}
	b.progressf("release: %s: version %s for %s, rollback index %d, slot image %.1f MB\n", o.Out, m.Version, m.Board, m.RollbackIndex, float64(m.SlotPayload().Size)/1e6)
	return m, nil
}

// ReleaseFromSlot packs a slot directory (SlotTree's, manifest sm) into
// o.Out as a signed release of version.
func ReleaseFromSlot(ctx context.Context, slotDir string, sm slot.Manifest, version string, o ReleaseOptions) (release.Manifest, error) {
	var m release.Manifest
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return m, err
	}
	img := filepath.Join(o.Out, release.SlotImageFile)
	if err := sdcard.MakeSlotImage(ctx, img, 0, slotDir, o.Board+" "+version, sourceDateEpoch()); err != nil {
		return m, err
	}
	size, sum, err := slot.HashFile(img)
	if err != nil {
		return m, err
	}
	m = release.Manifest{
		Format: 1, Version: version, RollbackIndex: o.RollbackIndex, Board: o.Board,
		MinUpdater: release.UpdaterVersion, Slot: sm,
		Payloads: []release.Payload{{Name: release.SlotImageFile, Kind: release.KindSlotImage, Size: size, SHA256: sum}},
	}
	return m, release.WriteSigned(o.Out, m, o.Key)
}
