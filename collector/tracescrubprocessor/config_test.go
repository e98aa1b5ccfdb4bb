package tracescrubprocessor

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"example.invalid/tracescrub/collector/internal/testbatch"
	"example.invalid/tracescrub/collector/tracescrubprocessor/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	def := createDefaultConfig().(*Config)
	cases := []struct {
		id   string
		want *Config
		err  string
	}{
		{"", &Config{Component: "tracescrub.wasm", Timeout: 5 * time.Second, MaxMemoryMiB: 256, ReloadInterval: time.Second, PoolSize: def.PoolSize, MaxBatchesPerInstance: 32}, ""},
		{"full", &Config{
			Component: "/opt/tracescrub/tracescrub.wasm",
			Config: map[string]any{
				"noise": map[string]any{"extra_globs": []any{"*/ping"}},
				"mask":  map[string]any{"replacement": "label", "label": "[fnr]"},
			},
			Timeout: 2 * time.Second, MaxMemoryMiB: 128, ReloadInterval: 0, CacheDir: "/var/cache/tracescrub", PoolSize: 4,
			MaxBatchesPerInstance: 1,
		}, ""},
		{"config_file", &Config{Component: "tracescrub.wasm", ConfigFile: "scrub.yaml", Timeout: 5 * time.Second, MaxMemoryMiB: 256, ReloadInterval: 5 * time.Second, PoolSize: def.PoolSize, MaxBatchesPerInstance: 32}, ""},
		{"never_renew", &Config{Component: "tracescrub.wasm", Timeout: 5 * time.Second, MaxMemoryMiB: 256, ReloadInterval: time.Second, PoolSize: def.PoolSize, MaxBatchesPerInstance: 0}, ""},
		{"negative_max_batches", nil, "max_batches_per_instance: must be 0 (renew only after a trap) or above"},
		{"both", nil, "config and config_file are both set"},
		{"missing_component", nil, "component: required: write the path of the file that `tracescrub inspect --save FILE` writes"},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			id := component.NewID(metadata.Type)
			if c.id != "" {
				id = component.NewIDWithName(metadata.Type, c.id)
			}
			sub, err := cm.Sub(id.String())
			if err != nil {
				t.Fatal(err)
			}
			cfg := createDefaultConfig()
			if err := sub.Unmarshal(cfg); err != nil {
				t.Fatal(err)
			}
			if c.err != "" {
				err := confmap.Validate(cfg)
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, want %q", err, c.err)
				}
				return
			}
			got := cfg.(*Config)
			if !equalConfig(got, c.want) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func equalConfig(a, b *Config) bool {
	return a.Component == b.Component && a.ConfigFile == b.ConfigFile && a.Timeout == b.Timeout &&
		a.MaxMemoryMiB == b.MaxMemoryMiB && a.ReloadInterval == b.ReloadInterval && a.CacheDir == b.CacheDir &&
		a.PoolSize == b.PoolSize && a.MaxBatchesPerInstance == b.MaxBatchesPerInstance && strings.EqualFold(jsonOf(a.Config), jsonOf(b.Config))
}

func testConfig(t testing.TB) *Config {
	t.Helper()
	path, _ := testbatch.Component(t)
	cfg := createDefaultConfig().(*Config)
	cfg.Component = path
	cfg.CacheDir = filepath.Join(os.TempDir(), "tracescrub-collector-test-cache")
	cfg.PoolSize = 2
	return cfg
}

// Scenario: `otelcol validate` on configs the component refuses.
// Guarantees: every problem is listed with its key path and where it came
// from, and the refused value is not echoed.
func TestValidateListsComponentProblemsWithKeyPaths(t *testing.T) {
	cfg := testConfig(t)
	cfg.Config = map[string]any{"noise": map[string]any{"globs": []any{"[s3cret"}}, "colour": "blue"}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("a bad config validated")
	}
	msg := err.Error()
	for _, want := range []string{"config: noise.globs[0]: ", "config: colour: "} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q not in %q", want, msg)
		}
	}

	file := filepath.Join(t.TempDir(), "scrub.yaml")
	if err := os.WriteFile(file, []byte("mask:\n  mode: fuzzy\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = testConfig(t)
	cfg.ConfigFile = file
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `config_file "`+file+`": mask.mode: `) {
		t.Fatalf("config_file problem: %v", err)
	}

	if err := os.WriteFile(file, []byte("noise:\n  extra_globs: ['*/ping']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a good config_file: %v", err)
	}
}

func TestValidateRefusesAWrongComponentFile(t *testing.T) {
	cfg := testConfig(t)
	cfg.Component = filepath.Join(t.TempDir(), "not.wasm")
	if err := os.WriteFile(cfg.Component, []byte("not wasm"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "not a WebAssembly file") {
		t.Fatalf("got %v", err)
	}
}

// Scenario: the same config file as `tracescrub serve`, with its gateway
// section, in YAML and in JSON.
// Guarantees: the gateway section is taken out and the rest passed on.
func TestConfigFileDropsGatewaySection(t *testing.T) {
	for name, body := range map[string]string{
		"scrub.yaml": "gateway:\n  upstream: http://127.0.0.1:4318\nnoise:\n  extra_globs: ['*/ping']\n",
		"scrub.json": `{"gateway":{"upstream":"http://127.0.0.1:4318"},"noise":{"extra_globs":["*/ping"]}}`,
		"empty.yaml": "",
	} {
		got, err := configFileJSON(name, []byte(body))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := `{"noise":{"extra_globs":["*/ping"]}}`
		if name == "empty.yaml" {
			want = "{}"
		}
		if got != want {
			t.Errorf("%s: got %s, want %s", name, got, want)
		}
	}
}

// Scenario: the default of max_batches_per_instance, read from the Rust
// host's source.
// Guarantees: the collector renews as often as `tracescrub serve` does.
func TestMaxBatchesPerInstanceDefaultMatchesRustHost(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "host-harness", "runtime", "src", "scrubber.rs"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`pub const DEFAULT_MAX_BATCHES_PER_INSTANCE: u64 = (\d+);`).FindSubmatch(src)
	if m == nil {
		t.Fatal("DEFAULT_MAX_BATCHES_PER_INSTANCE not found in scrubber.rs")
	}
	if want, got := string(m[1]), fmt.Sprint(createDefaultConfig().(*Config).MaxBatchesPerInstance); got != want {
		t.Fatalf("default max_batches_per_instance %s, the Rust host's %s", got, want)
	}
}
