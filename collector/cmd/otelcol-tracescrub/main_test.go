package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/otelcol"

	"example.invalid/tracescrub/collector/internal/testbatch"
)

func TestComponentsHasEveryFactory(t *testing.T) {
	f, err := components()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tracescrub", "filter", "transform", "redaction", "batch", "memory_limiter"} {
		if _, ok := f.Processors[typeOf(t, name)]; !ok {
			t.Errorf("no %s processor", name)
		}
	}
	for _, name := range []string{"otlp", "otlphttp", "debug", "file"} {
		if _, ok := f.Exporters[typeOf(t, name)]; !ok {
			t.Errorf("no %s exporter", name)
		}
	}
}

// Scenario: `otelcol-tracescrub validate` on a config whose tracescrub
// section the component refuses.
// Guarantees: it fails naming the processor and the key path.
func TestValidateNamesTheKey(t *testing.T) {
	comp, _ := testbatch.Component(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pipeline := `
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  debug:
processors:
  tracescrub:
    component: ` + comp + `
    cache_dir: ` + filepath.Join(os.TempDir(), "tracescrub-collector-test-cache") + `
    config:
      noise:
        globs: ["[unclosed"]
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tracescrub]
      exporters: [debug]
`
	bad := write("bad.yaml", pipeline)
	err := validate(t, bad)
	if err == nil || !strings.Contains(err.Error(), "tracescrub") || !strings.Contains(err.Error(), "noise.globs[0]") {
		t.Fatalf("validate: %v", err)
	}
	good := write("good.yaml", strings.Replace(pipeline, `globs: ["[unclosed"]`, `extra_globs: ["*/ping"]`, 1))
	if err := validate(t, good); err != nil {
		t.Fatalf("validate a good config: %v", err)
	}
}

func validate(t *testing.T, file string) error {
	t.Helper()
	set := settings()
	cmd := otelcol.NewCommand(set)
	cmd.SetArgs([]string{"validate", "--config", "file:" + file})
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	return cmd.Execute()
}
