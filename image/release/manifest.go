package release

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"aead.dev/minisign"

	"github.com/snodebox/snodebox/image/slot"
)

// UpdaterVersion is this updater's protocol: a release whose min_updater is
// higher needs a newer snoded first (install an intermediate release).
const UpdaterVersion = 1

// Release directory file names.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.json.minisig"
	SlotImageFile = "slot.img"
	// Key files inside a slot: the keys the system in it trusts.
	SlotReleaseKeys = "release-keys.txt"
	SlotAdminKeys   = "admin-keys.txt"
)

// Payload kinds.
const KindSlotImage = "slot-image" // a FAT filesystem image written to the start of the inactive slot

// Payload is one file of a release.
type Payload struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest is manifest.json.
type Manifest struct {
	Format        int    `json:"format"`
	Version       string `json:"version"`
	RollbackIndex uint64 `json:"rollback_index"`
	Board         string `json:"board"`
	MinUpdater    int    `json:"min_updater"`
	// Slot is what the slot image holds (its manifest.json): the update
	// agent checks the written slot against it.
	Slot     slot.Manifest `json:"slot"`
	Payloads []Payload     `json:"payloads"`
}

// Marshal is manifest.json's bytes (what the signature covers).
func (m Manifest) Marshal() []byte {
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// ParseManifest reads manifest.json strictly: unknown fields are errors, so
// a release meant for a newer updater is not half understood.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("release manifest: %w", err)
	}
	switch {
	case m.Format != 1:
		return m, fmt.Errorf("release manifest: format %d, this updater reads format 1", m.Format)
	case m.Version == "" || m.Board == "":
		return m, errors.New("release manifest: no version or board")
	case len(m.Payloads) != 1 || m.Payloads[0].Kind != KindSlotImage:
		return m, errors.New("release manifest: want exactly one slot-image payload")
	case len(m.Payloads[0].SHA256) != 64 || m.Payloads[0].Size <= 0:
		return m, errors.New("release manifest: payload without size or sha256")
	case strings.ContainsAny(m.Payloads[0].Name, "/\\") || m.Payloads[0].Name == "" || m.Payloads[0].Name[0] == '.':
		return m, fmt.Errorf("release manifest: payload name %q", m.Payloads[0].Name)
	}
	return m, nil
}

// Sign signs manifest bytes; the trusted comment names the release, so
// `minisign -V` shows what was verified.
func Sign(k minisign.PrivateKey, manifest []byte, m Manifest) []byte {
	return minisign.SignWithComments(k, manifest,
		fmt.Sprintf("snodebox %s for %s, rollback index %d", m.Version, m.Board, m.RollbackIndex),
		"snodebox release signature")
}

// SlotPayload is the manifest's slot image.
func (m Manifest) SlotPayload() Payload { return m.Payloads[0] }

// Push is an admin's signed request to install a release now.
type Push struct {
	Time     time.Time
	Manifest []byte // manifest.json
	Sig      []byte // manifest.json.minisig
}

// Statement is what an admin key signs for a push: the time (replays are
// refused) and the hashes of the manifest and its signature.
func (p Push) Statement() []byte {
	mh := sha256.Sum256(p.Manifest)
	sh := sha256.Sum256(p.Sig)
	return []byte("snodebox update push\n" + strconv.FormatInt(p.Time.UnixMilli(), 10) + "\n" + hex.EncodeToString(mh[:]) + "\n" + hex.EncodeToString(sh[:]) + "\n")
}

// Push HTTP request: POST PushPath on the node's HTTPS port, headers below,
// body = the manifest, the signature, then the slot image, framed by
// PushSizes ("manifestLen,sigLen").
const (
	PushPath         = "/snodebox/v1/update"
	HeaderPushTime   = "X-Snodebox-Time"      // unix milliseconds
	HeaderPushSig    = "X-Snodebox-Admin-Sig" // base64 of the minisign signature of Statement
	HeaderPushLayout = "X-Snodebox-Parts"     // "manifestLen,sigLen"
)

// WriteSigned writes m and its signature into a release directory.
func WriteSigned(dir string, m Manifest, k minisign.PrivateKey) error {
	data := m.Marshal()
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), data, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, SignatureFile), Sign(k, data, m), 0o644)
}
