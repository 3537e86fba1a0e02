package distkit

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// patterns are the pattern packages, which must not import each other.
// faultnet is a test helper that any package's tests may use, so it is not
// in the list.
var patterns = []string{
	"adapter", "ambassador", "discovery", "election",
	"scattergather", "shard", "sidecar", "workqueue",
}

const module = "github.com/distkit/distkit"

// crossImports returns "a imports b" for every pattern package a whose
// non-test dependencies, direct or not, include another pattern package b.
// listing holds lines of "package dep dep ...", as go list prints them.
func crossImports(listing string) []string {
	var bad []string
	for line := range strings.Lines(listing) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(fields[0], module+"/")
		if !slices.Contains(patterns, pkg) {
			continue
		}
		for _, dep := range fields[1:] {
			d := strings.TrimPrefix(dep, module+"/")
			if d != pkg && (slices.Contains(patterns, d) || slices.ContainsFunc(patterns, func(p string) bool {
				return strings.HasPrefix(d, p+"/")
			})) {
				bad = append(bad, pkg+" imports "+d)
			}
		}
	}
	return bad
}

// TestPatternsDoNotImportEachOther keeps the architecture's first rule:
// pattern packages meet only through small interfaces in user code.
func TestPatternsDoNotImportEachOther(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	if !strings.Contains(string(out), module+"/shard ") {
		t.Fatalf("go list did not list the shard package:\n%s", out)
	}
	for _, b := range crossImports(string(out)) {
		t.Error(b)
	}
}

// TestCrossImportsCatchesViolations shows that the check above can fail.
func TestCrossImportsCatchesViolations(t *testing.T) {
	listing := module + "/ambassador fmt " + module + "/internal/clock " + module + "/shard\n" +
		module + "/shard fmt github.com/cespare/xxhash/v2\n" +
		module + "/workqueue " + module + "/election/electiontest\n" +
		module + "/examples/cluster " + module + "/shard " + module + "/election\n"
	got := crossImports(listing)
	want := []string{"ambassador imports shard", "workqueue imports election/electiontest"}
	if !slices.Equal(got, want) {
		t.Fatalf("crossImports = %q, want %q", got, want)
	}
}
