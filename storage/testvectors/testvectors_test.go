package testvectors

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// DESIGN.md §7: every shared vector must be used by a test. A vector counts
// as used when some test outside this package names its category through
// Category(...), a prefix of its id through Prefix(...), or its exact id as a
// string literal (helpers that look vectors up by id).
func TestEveryVectorIsUsedByATest(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("no vectors loaded")
	}
	p, err := Path()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(p))
	self, _ := filepath.Abs(".")

	categories := map[string]bool{}
	var prefixes []string
	literals := map[string]bool{}
	callRE := regexp.MustCompile(`testvectors\.(Category|Prefix)\("([^"]+)"\)`)
	litRE := regexp.MustCompile(`"([a-z0-9_]+\.[A-Za-z0-9_.\-]+)"`)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "build" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") || filepath.Dir(path) == self {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range callRE.FindAllStringSubmatch(string(src), -1) {
			if m[1] == "Category" {
				categories[m[2]] = true
			} else {
				prefixes = append(prefixes, m[2])
			}
		}
		for _, m := range litRE.FindAllStringSubmatch(string(src), -1) {
			literals[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	seen := map[string]bool{}
	for _, v := range all {
		if seen[v.ID] && v.Category != "swarm_space" {
			// swarm_space ids are shortened keys; two pairs share a prefix.
			t.Errorf("vector id %s appears twice", v.ID)
		}
		seen[v.ID] = true
		if categories[v.Category] || literals[v.ID] || hasPrefix(v.ID, prefixes) {
			continue
		}
		t.Errorf("vector %s (category %s) is not used by any test", v.ID, v.Category)
	}
}

func hasPrefix(id string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return false
}

func TestCategoryRefusesUnknown(t *testing.T) {
	if _, err := Category("no-such-category"); err == nil {
		t.Fatal("an unknown category must be an error, not an empty table")
	}
	if _, err := Prefix("no-such-prefix."); err == nil {
		t.Fatal("an unknown prefix must be an error, not an empty table")
	}
}
