package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"example.invalid/tracescrub/collector/internal/testbatch"
)

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Scenario: a good batch and a malformed one, with a good config.
// Guarantees: results.json in the shared shape, the output file written
// only for the good batch.
func TestRunWritesResultsInTheSharedShape(t *testing.T) {
	comp, _ := testbatch.Component(t)
	in, out := t.TempDir(), t.TempDir()
	cfg := filepath.Join(t.TempDir(), "config.json")
	writeFile(t, cfg, []byte(`{}`))
	writeFile(t, filepath.Join(in, "a.binpb"), testbatch.Marshal(t, testbatch.Canary()))
	writeFile(t, filepath.Join(in, "b.binpb"), []byte{0x0a, 0x05, 0x01})
	if err := run([]string{"run", "--component", comp, "--config", cfg, in, out}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var res struct {
		Create  map[string]any `json:"create"`
		Batches map[string]struct {
			Stats map[string]any `json:"stats"`
			Error map[string]any `json:"error"`
		} `json:"batches"`
	}
	raw, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	if res.Create["ok"] != true {
		t.Fatalf("create %v", res.Create)
	}
	a := res.Batches["a.binpb"].Stats
	if a["spans_in"] != 2.0 || a["spans_out"] != 1.0 || a["values_masked"] != 1.0 {
		t.Fatalf("a.binpb stats %v", a)
	}
	for _, k := range []string{"spans_dropped", "dropped_by_rule", "dropped_descendants", "masked_by_detector", "masked_by_field"} {
		if _, ok := a[k]; !ok {
			t.Errorf("stats lack %s", k)
		}
	}
	b := res.Batches["b.binpb"].Error
	if b["kind"] != "malformed-batch" || b["offset"] == nil || b["reason"] == nil {
		t.Fatalf("b.binpb error %v", b)
	}
	if _, err := os.Stat(filepath.Join(out, "a.binpb")); err != nil {
		t.Fatal("no output for a.binpb")
	}
	if _, err := os.Stat(filepath.Join(out, "b.binpb")); err == nil {
		t.Fatal("an output for the malformed batch")
	}
}

// Scenario: a config the component refuses.
// Guarantees: create's error with the problems, and no batches.
func TestRunWithBadConfigReportsCreateError(t *testing.T) {
	comp, _ := testbatch.Component(t)
	in, out := t.TempDir(), t.TempDir()
	cfg := filepath.Join(t.TempDir(), "config.json")
	writeFile(t, cfg, []byte(`{"mask":{"mode":"fuzzy"}}`))
	if err := run([]string{"run", "--component", comp, "--config", cfg, in, out}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(out, "results.json"))
	var res map[string]map[string]map[string]any
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	e := res["create"]["error"]
	if e["kind"] != "invalid-config" || len(e["problems"].([]any)) == 0 {
		t.Fatalf("create %v", res["create"])
	}
	if _, ok := res["batches"]; ok {
		t.Fatal("batches after a failed create")
	}
}

func TestBenchPrintsOneLine(t *testing.T) {
	comp, _ := testbatch.Component(t)
	in := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "config.json")
	writeFile(t, cfg, []byte(`{}`))
	writeFile(t, filepath.Join(in, "a.binpb"), testbatch.Marshal(t, testbatch.Canary()))
	var outBuf bytes.Buffer
	if err := run([]string{"bench", "--component", comp, "--config", cfg, "--rounds", "3", in}, &outBuf); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^bench: spans_per_s=\d+ mb_s=[\d.]+ batches=1 rounds=3\n$`).Match(outBuf.Bytes()) {
		t.Fatalf("bench printed %q", outBuf.String())
	}
}
