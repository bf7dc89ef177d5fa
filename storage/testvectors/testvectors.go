// Package testvectors loads testdata/session-vectors.json (a copy of the
// shared protocol vectors) for table tests in any package of the module.
package testvectors

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Vector is one entry; Inputs and Expected stay raw so each test decodes the
// fields it checks into its own typed struct.
type Vector struct {
	ID       string          `json:"id"`
	Category string          `json:"category"`
	Inputs   json.RawMessage `json:"inputs"`
	Expected json.RawMessage `json:"expected"`
	Notes    string          `json:"notes"`
}

// Path finds testdata/session-vectors.json by walking up to the module root.
func Path() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "session-vectors.json"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// All returns every vector.
func All() ([]Vector, error) {
	p, err := Path()
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read vectors: %w", err)
	}
	var doc struct {
		Vectors []Vector `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse vectors %s: %w", p, err)
	}
	return doc.Vectors, nil
}

// Category returns the vectors of one category; it fails when there are none
// so a renamed category cannot silently turn a table test into a no-op.
func Category(cat string) ([]Vector, error) {
	return filter(func(v Vector) bool { return v.Category == cat }, "category "+cat)
}

// Prefix returns the vectors whose id starts with prefix (same failure rule).
func Prefix(prefix string) ([]Vector, error) {
	return filter(func(v Vector) bool { return strings.HasPrefix(v.ID, prefix) }, "prefix "+prefix)
}

func filter(keep func(Vector) bool, what string) ([]Vector, error) {
	all, err := All()
	if err != nil {
		return nil, err
	}
	var out []Vector
	for _, v := range all {
		if keep(v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no vectors for %s", what)
	}
	return out, nil
}
