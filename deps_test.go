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

// patternOf returns the pattern a package belongs to (its first path
// element below the module, if that is a pattern), or "".
func patternOf(pkg string) string {
	rest, ok := strings.CutPrefix(pkg, module+"/")
	if !ok {
		return ""
	}
	first, _, _ := strings.Cut(rest, "/")
	if slices.Contains(patterns, first) {
		return first
	}
	return ""
}

// crossImports returns "a imports b" for every package a of one pattern
// (the pattern's package or one below it, like shard/shardtest) whose
// non-test dependencies, direct or not, include a package of another
// pattern. listing holds lines of "package dep dep ...", as go list prints
// them.
func crossImports(listing string) []string {
	var bad []string
	for line := range strings.Lines(listing) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		own := patternOf(fields[0])
		if own == "" {
			continue
		}
		for _, dep := range fields[1:] {
			if p := patternOf(dep); p != "" && p != own {
				bad = append(bad, strings.TrimPrefix(fields[0], module+"/")+" imports "+strings.TrimPrefix(dep, module+"/"))
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
		module + "/shard/shardtest " + module + "/shard " + module + "/discovery\n" +
		module + "/workqueue " + module + "/election/electiontest\n" +
		module + "/examples/cluster " + module + "/shard " + module + "/election\n"
	got := crossImports(listing)
	want := []string{
		"ambassador imports shard",
		"shard/shardtest imports discovery",
		"workqueue imports election/electiontest",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("crossImports = %q, want %q", got, want)
	}
}
