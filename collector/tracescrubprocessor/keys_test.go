package tracescrubprocessor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"example.invalid/tracescrub/collector/internal/testbatch"
)

// testKey is the key of the Rust engine's pseudonym golden test
// (processor/tests/detectors.rs), 40 bytes.
const testKey = "ZqX7 tracescrub-distinctive-key-40bytes!"

// hmacConfig names key.txt, beside it, as the pseudonym key; golden is the
// pseudonym of the number pseudonymOf sends under testKey.
const (
	hmacConfig = "mask:\n  replacement: hmac\n  hmac: {key_id: k2026, key_file: key.txt}\n"
	golden     = "fnr:k2026:hfbptcllqsfnddcd"
)

// pseudonymOf sends one span whose attribute a is a personal number, and
// returns what a became and the batch it came in.
func pseudonymOf(t *testing.T, h *harness) (string, ptrace.Traces) {
	t.Helper()
	td := testbatch.Build(testbatch.Span{Name: "work", Attrs: map[string]string{"a": "13097248022"}, Parent: -1})
	if err := h.proc.ConsumeTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	got := h.sink.AllTraces()
	last := got[len(got)-1]
	v, _ := last.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().Get("a")
	return v.Str(), last
}

// Scenario: a config file naming a pseudonym key file (with the newline
// `echo` writes), relative to the config file; a batch with a personal
// number.
// Guarantees: the processor reads the key and the number becomes the
// pseudonym the Rust engine's golden test gives for that key (the same on
// every host); the key is in no output.
func TestPseudonymKeyIsReadFromAFileAndMatchesTheGolden(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "key.txt"), testKey+"\n")
	h, _ := startOnConfigFile(t, dir, hmacConfig)
	got, batch := pseudonymOf(t, h)
	if got != golden {
		t.Fatalf("pseudonym %q, want the golden %s", got, golden)
	}
	out, _ := (&ptrace.JSONMarshaler{}).MarshalTraces(batch)
	if strings.Contains(string(out), testKey) {
		t.Fatal("the key reached the output")
	}
}

// Scenario: the key file named by the watched config file is replaced by
// another key, the config file left as it is.
// Guarantees: the processor reloads on the key alone, and the same number
// then becomes another pseudonym under the same key_id; the config hash,
// which is logged, stays the same.
func TestANewKeyFileAloneReloads(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "key.txt"), testKey)
	h, file := startOnConfigFile(t, dir, hmacConfig)
	if got, _ := pseudonymOf(t, h); got != golden {
		t.Fatalf("pseudonym %q, want the golden %s", got, golden)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfgBefore, keyBefore := configFileHash(file, raw)
	write(t, filepath.Join(dir, "key.txt"), strings.ToUpper(testKey))
	// The config hash is logged: it must not depend on the key.
	if cfgAfter, keyAfter := configFileHash(file, raw); cfgAfter != cfgBefore || keyAfter == keyBefore {
		t.Fatalf("a new key: config hash %s -> %s (want the same), key hash %s -> %s (want another)", cfgBefore, cfgAfter, keyBefore, keyAfter)
	}
	waitFor(t, func() bool { return h.sum(t, "otelcol_processor_tracescrub_reloads", "outcome", "success") == 1 })
	if got, _ := pseudonymOf(t, h); got == golden || !strings.HasPrefix(got, "fnr:k2026:") {
		t.Fatalf("after the new key the pseudonym is %q: want another fnr:k2026: one", got)
	}
}

// Scenario: keys from an environment variable, and every way to get the
// key wrong: a short key, a missing file, an unset variable, both sources,
// key_hex written in the config.
// Guarantees: the variable works; each mistake is an error that names the
// key path and never holds the key.
func TestPseudonymKeyErrorsNameTheKeyPathNeverTheKey(t *testing.T) {
	dir := t.TempDir()
	short := "tinykey-not-enough"
	write(t, filepath.Join(dir, "short.txt"), short)
	t.Setenv("TRACESCRUB_TEST_KEY", testKey)
	t.Setenv("TRACESCRUB_TEST_SHORT", short)
	doc := func(hmac string) string {
		return "mask:\n  replacement: hmac\n  hmac: {key_id: k2026, " + hmac + "}\n"
	}
	cfg := testConfig(t)
	cfg.ConfigFile = filepath.Join(dir, "scrub.yaml")

	write(t, cfg.ConfigFile, doc("key_env: TRACESCRUB_TEST_KEY"))
	src, err := cfg.readSource(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src.configJSON, `"key_hex":"5a715837`) || strings.Contains(src.configJSON, "key_env") {
		t.Fatal("the key from the variable was not passed as key_hex")
	}

	for _, c := range []struct{ hmac, want string }{
		{"key_file: short.txt", "mask.hmac.key_file"},
		{"key_file: missing.txt", "mask.hmac.key_file"},
		{"key_env: TRACESCRUB_TEST_SHORT", "mask.hmac.key_env"},
		{"key_env: TRACESCRUB_TEST_UNSET", "TRACESCRUB_TEST_UNSET is not set"},
		{"key_file: short.txt, key_env: TRACESCRUB_TEST_KEY", "not both"},
		{"key_hex: 5a71583720747261636573637275622d", "set only by the host"},
	} {
		write(t, cfg.ConfigFile, doc(c.hmac))
		_, err := cfg.readSource(nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: error %v, want one naming %q", c.hmac, err, c.want)
		}
		if strings.Contains(err.Error(), short) || strings.Contains(err.Error(), testKey) {
			t.Fatalf("%s: the error shows the key: %v", c.hmac, err)
		}
	}
}
