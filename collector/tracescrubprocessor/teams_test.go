package tracescrubprocessor

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"example.invalid/tracescrub/collector/internal/testbatch"
)

// teamDir writes a version-2 config naming teams/ and the given team files
// into a fresh directory; returns the config's path.
func teamDir(t *testing.T, teams map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "teams"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range teams {
		write(t, filepath.Join(dir, "teams", name), body)
	}
	file := filepath.Join(dir, "scrub.yaml")
	write(t, file, "version: 2\nteams:\n  dir: teams/\n")
	return file
}

// Scenario: a teams directory with a good file, a broken one and a team
// written as both .yaml and .yml; then read again with the first reading
// as the serving version.
// Guarantees: the good file is passed as its document, the others as
// errors (neither of a doubled team wins), both counted as failed; a
// failed team keeps the entry of the version serving; the config hash the
// watch compares covers the team files.
func TestTeamFilesAreAttachedAndKeepTheirLastGoodVersion(t *testing.T) {
	file := teamDir(t, map[string]string{
		"a.yaml": "noise:\n  extra_globs: ['/a']\n",
		"b.yml":  "noise: [\n",
		"c.yaml": "noise: {}\n",
		"c.yml":  "noise: {}\n",
	})
	cfg := testConfig(t)
	cfg.ConfigFile = file
	first, err := cfg.readSource(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"b", "c"}; !reflect.DeepEqual(first.teamFailures, want) {
		t.Fatalf("failures %v, want %v", first.teamFailures, want)
	}
	a := first.teams["a"].(map[string]any)
	if a["file"] != "teams/a.yaml" || jsonOf(a["doc"]) != `{"noise":{"extra_globs":["/a"]}}` {
		t.Fatalf("a: %s", jsonOf(a))
	}
	if e := first.teams["c"].(map[string]any)["error"]; !strings.Contains(e.(string), "two files") {
		t.Fatalf("c: %v", e)
	}
	if !strings.Contains(first.configJSON, `"files":{`) {
		t.Fatalf("no team files in %s", first.configJSON)
	}
	raw, _ := os.ReadFile(file)
	if h, _ := configFileHash(file, raw); first.configHash != h {
		t.Fatal("readSource and the watch hash the config differently")
	}

	write(t, filepath.Join(filepath.Dir(file), "teams", "a.yaml"), "noise: [\n")
	if h, _ := configFileHash(file, raw); h == first.configHash {
		t.Fatal("a team file's change does not change the config hash")
	}
	next, err := cfg.readSource(first.teams)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(next.teams["a"], first.teams["a"]) {
		t.Fatalf("a did not keep its last good version: %s", jsonOf(next.teams["a"]))
	}
	if want := []string{"a", "b", "c"}; !reflect.DeepEqual(next.teamFailures, want) {
		t.Fatalf("failures %v, want %v", next.teamFailures, want)
	}
}

// inNamespace is a one-span batch for a resource of namespace ns.
func inNamespace(ns, path string, attrs map[string]string) ptrace.Traces {
	all := map[string]string{"url.path": path}
	for k, v := range attrs {
		all[k] = v
	}
	td := testbatch.Build(testbatch.Span{Name: "GET " + path, Attrs: all, Parent: -1})
	td.ResourceSpans().At(0).Resource().Attributes().PutStr("k8s.namespace.name", ns)
	return td
}

// Scenario: the collector processor with a teams directory: team-a drops
// /ping; its file is edited to drop /pong, then made unparseable, then
// made to turn masking off; team-b then adds the email detector.
// Guarantees: each team's rules apply to its own resources only; an edit
// reloads; a file that does not parse and one that breaks a rule each keep
// the team's last good version (the reload succeeds, the failure is
// counted); a team file can add masking.
func TestTeamFilesApplyAndReload(t *testing.T) {
	file := teamDir(t, map[string]string{"team-a.yaml": "noise:\n  extra_globs: ['*/ping']\n"})
	teamA := filepath.Join(filepath.Dir(file), "teams", "team-a.yaml")
	cfg := testConfig(t)
	cfg.ConfigFile = file
	cfg.ReloadInterval = 20 * time.Millisecond
	h := start(t, cfg)
	passes := func(td ptrace.Traces) bool {
		t.Helper()
		before := len(h.sink.AllTraces())
		if err := h.proc.ConsumeTraces(context.Background(), td); err != nil {
			t.Fatal(err)
		}
		return len(h.sink.AllTraces()) > before
	}
	if passes(inNamespace("team-a", "/ping", nil)) || !passes(inNamespace("team-b", "/ping", nil)) {
		t.Fatal("team-a's rule must drop team-a's /ping only")
	}

	write(t, teamA, "noise:\n  extra_globs: ['*/pong']\n")
	waitFor(t, func() bool { return h.sum(t, "otelcol_processor_tracescrub_reloads", "outcome", "success") == 1 })
	if passes(inNamespace("team-a", "/pong", nil)) || !passes(inNamespace("team-a", "/ping", nil)) {
		t.Fatal("the edited team file did not take over")
	}

	write(t, teamA, "noise: [\n")
	waitFor(t, func() bool { return h.sum(t, "otelcol_processor_tracescrub_team_file_failures", "", "") == 1 })
	waitFor(t, func() bool { return h.sum(t, "otelcol_processor_tracescrub_reloads", "outcome", "success") == 2 })
	if passes(inNamespace("team-a", "/pong", nil)) {
		t.Fatal("a broken team file lost the team's last good rules")
	}

	// Parses, but breaks a rule: the component refuses it under strict.
	write(t, teamA, "mask: {enabled: false}\nnoise:\n  extra_globs: ['*/zzz']\n")
	waitFor(t, func() bool { return h.sum(t, "otelcol_processor_tracescrub_team_file_failures", "", "") == 2 })
	waitFor(t, func() bool { return h.sum(t, "otelcol_processor_tracescrub_reloads", "outcome", "success") == 3 })
	if passes(inNamespace("team-a", "/pong", nil)) || !passes(inNamespace("team-a", "/zzz", nil)) {
		t.Fatal("a team file that breaks a rule must keep the team's last good rules, and none of its own")
	}

	write(t, filepath.Join(filepath.Dir(file), "teams", "team-b.yaml"), "mask:\n  detectors: [email]\n")
	waitFor(t, func() bool { return h.sum(t, "otelcol_processor_tracescrub_reloads", "outcome", "success") == 4 })
	email := map[string]string{"enduser.email": "kari@example.no"}
	for _, ns := range []string{"team-a", "team-b"} {
		if !passes(inNamespace(ns, "/api", email)) {
			t.Fatalf("%s: /api dropped", ns)
		}
	}
	got := h.sink.AllTraces()
	value := func(td ptrace.Traces) string {
		v, _ := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().Get("enduser.email")
		return v.Str()
	}
	if a, b := value(got[len(got)-2]), value(got[len(got)-1]); a != "kari@example.no" || b == a || strings.Contains(b, "@example") {
		t.Fatalf("team-a's email %q must pass, team-b's %q be masked", a, b)
	}
}

// Scenario: a config whose teams.dir is an absolute path elsewhere, and a
// team file with a `gateway:` key (a key only the platform's file may have).
// Guarantees: the directory is read where it is; the team file's keys are
// passed as written, so the component refuses it as `tracescrub` does,
// rather than this host quietly dropping the key.
func TestTeamsDirMayBeAbsoluteAndTeamFilesKeepEveryKey(t *testing.T) {
	teams := t.TempDir()
	write(t, filepath.Join(teams, "a.yaml"), "gateway: {}\nnoise: {}\n")
	file := filepath.Join(t.TempDir(), "scrub.yaml")
	write(t, file, "version: 2\nteams:\n  dir: "+teams+"\n")
	cfg := testConfig(t)
	cfg.ConfigFile = file
	src, err := cfg.readSource(nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := src.teams["a"].(map[string]any)
	doc, _ := a["doc"].(map[string]any)
	if _, kept := doc["gateway"]; !kept {
		t.Fatalf("team a: %s", jsonOf(src.teams))
	}
}

// Scenario: `otelcol validate` on a config whose team file turns masking off.
// Guarantees: the team file's problem is listed with its file and key path,
// as `tracescrub config check` lists it.
func TestValidateListsTeamFileProblems(t *testing.T) {
	file := teamDir(t, map[string]string{"a.yaml": "mask: {enabled: false}\n"})
	cfg := testConfig(t)
	cfg.ConfigFile = file
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "teams/a.yaml:mask.enabled") {
		t.Fatalf("validate: %v", err)
	}
}
