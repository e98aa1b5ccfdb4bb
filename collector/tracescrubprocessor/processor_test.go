package tracescrubprocessor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"example.invalid/tracescrub/collector/internal/testbatch"
	"example.invalid/tracescrub/collector/tracescrubprocessor/internal/metadata"
)

type harness struct {
	proc processor.Traces
	sink *consumertest.TracesSink
	tel  *componenttest.Telemetry
}

func start(t *testing.T, cfg *Config) *harness {
	t.Helper()
	h := &harness{sink: &consumertest.TracesSink{}, tel: componenttest.NewTelemetry()}
	set := processortest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = h.tel.NewTelemetrySettings()
	proc, err := NewFactory().CreateTraces(context.Background(), set, cfg, h.sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	h.proc = proc
	t.Cleanup(func() {
		if err := proc.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		_ = h.tel.Shutdown(context.Background())
	})
	return h
}

// sum returns a counter's value for one attribute value (all points when
// attr is empty).
func (h *harness) sum(t *testing.T, name, attr, value string) int64 {
	t.Helper()
	m, err := h.tel.GetMetric(name)
	if err != nil {
		return 0
	}
	var n int64
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		if attr == "" {
			n += dp.Value
			continue
		}
		if v, ok := dp.Attributes.Value(attribute.Key(attr)); ok && v.AsString() == value {
			n += dp.Value
		}
	}
	return n
}

func TestFactory(t *testing.T) {
	f := NewFactory()
	if f.Type().String() != "tracescrub" {
		t.Fatal(f.Type())
	}
	if err := componenttest.CheckConfigStruct(f.CreateDefaultConfig()); err != nil {
		t.Fatal(err)
	}
	cfg := f.CreateDefaultConfig().(*Config)
	if cfg.Timeout != 5*time.Second || cfg.MaxMemoryMiB != 256 || cfg.ReloadInterval != time.Second || cfg.PoolSize < 1 {
		t.Fatalf("defaults %+v", cfg)
	}
}

// Scenario: a batch with a health check, its child, and a request carrying a
// personal number, through the processor into a sink.
// Guarantees: the sink gets one span with the number masked; the metrics
// count the drop by rule, the mask by detector and field, and the batch.
func TestProcessorDropsMasksAndCounts(t *testing.T) {
	h := start(t, testConfig(t))
	td := testbatch.Build(
		testbatch.Span{Name: "GET /isAlive", Attrs: map[string]string{"url.path": "/isAlive"}, Parent: -1},
		testbatch.Span{Name: "db ping", Parent: 0},
		testbatch.Span{Name: "GET /api/person", Attrs: map[string]string{"url.path": "/api/person/" + testbatch.Number}, Parent: -1},
	)
	if err := h.proc.ConsumeTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	got := h.sink.AllTraces()
	if len(got) != 1 || got[0].SpanCount() != 1 {
		t.Fatalf("sink got %d batches", len(got))
	}
	sp := got[0].ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	if v, _ := sp.Attributes().Get("url.path"); v.Str() != "/api/person/"+testbatch.Masked {
		t.Fatalf("url.path %q", v.Str())
	}
	checks := []struct {
		name, attr, value string
		want              int64
	}{
		{"otelcol_processor_tracescrub_spans_dropped", "rule", "*/isAlive", 1},
		{"otelcol_processor_tracescrub_spans_dropped", "rule", "descendant", 1},
		{"otelcol_processor_tracescrub_values_masked", "detector", "fnr", 1},
		{"otelcol_processor_tracescrub_values_masked_by_field", "field", "span-attribute", 1},
		{"otelcol_processor_tracescrub_batches", "outcome", "ok", 1},
	}
	for _, c := range checks {
		if n := h.sum(t, c.name, c.attr, c.value); n != c.want {
			t.Errorf("%s{%s=%q} = %d, want %d", c.name, c.attr, c.value, n, c.want)
		}
	}
	m, err := h.tel.GetMetric("otelcol_processor_tracescrub_processing_duration")
	if err != nil || m.Data.(metricdata.Histogram[float64]).DataPoints[0].Count != 1 {
		t.Fatalf("processing duration: %v", err)
	}
}

// Scenario: a batch of only health checks.
// Guarantees: nothing reaches the sink, and no error.
func TestAllDroppedSkipsTheRestOfThePipeline(t *testing.T) {
	h := start(t, testConfig(t))
	td := testbatch.Build(testbatch.Span{Name: "GET /isAlive", Attrs: map[string]string{"url.path": "/isAlive"}, Parent: -1})
	if err := h.proc.ConsumeTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	if n := len(h.sink.AllTraces()); n != 0 {
		t.Fatalf("sink got %d batches", n)
	}
}

// Scenario: a batch over the component's size limit, and one that passes
// its deadline.
// Guarantees: fail closed: nothing reaches the sink; the first error is
// permanent, the second retryable; each is counted by outcome.
func TestFailClosed(t *testing.T) {
	cfg := testConfig(t)
	cfg.Config = map[string]any{"limits": map[string]any{"max_batch_bytes": 4096}}
	h := start(t, cfg)
	spans := make([]testbatch.Span, 200)
	for i := range spans {
		spans[i] = testbatch.Span{Name: "GET /api/person", Attrs: map[string]string{"url.path": "/api/person/" + testbatch.Number}, Parent: -1}
	}
	err := h.proc.ConsumeTraces(context.Background(), testbatch.Build(spans...))
	if err == nil || !consumererror.IsPermanent(err) || !strings.Contains(err.Error(), "limit of 4096 bytes") {
		t.Fatalf("want a permanent batch-too-large error, got %v", err)
	}
	if h.sum(t, "otelcol_processor_tracescrub_batches", "outcome", "batch_too_large") != 1 {
		t.Error("batch_too_large not counted")
	}

	cfg = testConfig(t)
	cfg.Timeout = time.Nanosecond
	h2 := start(t, cfg)
	err = h2.proc.ConsumeTraces(context.Background(), testbatch.Build(spans...))
	if err == nil || consumererror.IsPermanent(err) {
		t.Fatalf("want a retryable deadline error, got %v", err)
	}
	if h2.sum(t, "otelcol_processor_tracescrub_batches", "outcome", "deadline") != 1 {
		t.Error("deadline not counted")
	}
	if len(h.sink.AllTraces())+len(h2.sink.AllTraces()) != 0 {
		t.Fatal("a refused batch was passed on")
	}
}

// Scenario: a processor whose config_file changes while it runs.
// Guarantees: the watch swaps in the new config (a new glob drops more), and
// counts a successful reload.
func TestReloadSwapsOnChangedConfigFile(t *testing.T) {
	h, file := startOnConfigFile(t, t.TempDir(), "noise:\n  extra_globs: []\n")
	ping := testbatch.Build(testbatch.Span{Name: "GET /ping", Attrs: map[string]string{"url.path": "/ping"}, Parent: -1})
	if err := h.proc.ConsumeTraces(context.Background(), ping); err != nil || len(h.sink.AllTraces()) != 1 {
		t.Fatalf("before reload: %v", err)
	}
	write(t, file, "noise:\n  extra_globs: ['*/ping']\n")
	waitFor(t, func() bool { return h.sum(t, "otelcol_processor_tracescrub_reloads", "outcome", "success") == 1 })
	if err := h.proc.ConsumeTraces(context.Background(), ping); err != nil {
		t.Fatal(err)
	}
	if n := len(h.sink.AllTraces()); n != 1 {
		t.Fatalf("after reload the /ping span still passes (%d batches)", n)
	}
}

// Scenario: the watched component file is overwritten with garbage, then the
// config file with a config the component refuses.
// Guarantees: the old version keeps serving, each failure is counted once.
func TestBrokenReloadKeepsOldVersion(t *testing.T) {
	_, comp := testbatch.Component(t)
	dir := t.TempDir()
	compPath := filepath.Join(dir, "tracescrub.wasm")
	if err := os.WriteFile(compPath, comp, 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "scrub.json")
	write(t, file, `{}`)
	cfg := testConfig(t)
	cfg.Component = compPath
	cfg.ConfigFile = file
	cfg.ReloadInterval = 20 * time.Millisecond
	h := start(t, cfg)

	write(t, compPath, "this is not a component")
	waitFor(t, func() bool { return h.sum(t, "otelcol_processor_tracescrub_reloads", "outcome", "failure") == 1 })
	if err := h.proc.ConsumeTraces(context.Background(), testbatch.Canary()); err != nil {
		t.Fatalf("old version stopped serving: %v", err)
	}
	write(t, compPath, string(comp))
	write(t, file, `{"noise":{"globs":"not a list"}}`)
	waitFor(t, func() bool { return h.sum(t, "otelcol_processor_tracescrub_reloads", "outcome", "failure") == 2 })
	time.Sleep(100 * time.Millisecond) // several ticks: still counted once
	if n := h.sum(t, "otelcol_processor_tracescrub_reloads", "outcome", "failure"); n != 2 {
		t.Fatalf("failures counted %d times", n)
	}
	if err := h.proc.ConsumeTraces(context.Background(), testbatch.Canary()); err != nil {
		t.Fatalf("old version stopped serving: %v", err)
	}
	got := h.sink.AllTraces()
	if len(got) != 2 || got[1].SpanCount() != 1 {
		t.Fatal("the old version did not process the batches")
	}
}

// startOnConfigFile writes content to scrub.yaml in dir and starts the
// processor on it with a fast watch; it returns the file too.
func startOnConfigFile(t *testing.T, dir, content string) (*harness, string) {
	t.Helper()
	file := filepath.Join(dir, "scrub.yaml")
	write(t, file, content)
	cfg := testConfig(t)
	cfg.ConfigFile = file
	cfg.ReloadInterval = 20 * time.Millisecond
	return start(t, cfg), file
}

// write replaces a file atomically, as a deployment would.
func write(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Scenario: max_batches_per_instance 2 on a pool of one; the canary is the
// first batch, then three through processTraces.
// Guarantees: the option reaches the pool: a fresh instance after every two
// batches, and none held once the fourth batch is done.
func TestMaxBatchesPerInstanceRenewsInstances(t *testing.T) {
	cfg := testConfig(t)
	cfg.PoolSize = 1
	cfg.MaxBatchesPerInstance = 2
	p, err := newProcessor(context.Background(), processortest.NewNopSettings(metadata.Type), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.shutdown(context.Background()) })
	for i := 0; i < 3; i++ {
		td := testbatch.Build(testbatch.Span{Name: "GET /api/person", Attrs: map[string]string{"url.path": "/api/person/" + testbatch.Number}, Parent: -1})
		out, err := p.processTraces(context.Background(), td)
		if err != nil {
			t.Fatal(err)
		}
		sp := out.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
		if got, _ := sp.Attributes().Get("url.path"); got.Str() != "/api/person/"+testbatch.Masked {
			t.Fatalf("batch %d: url.path %q", i, got.Str())
		}
	}
	e := p.current.Load().engine
	if e.Instances() != 2 || e.Idle() != 0 {
		t.Fatalf("%d instances made, %d idle; want 2 and 0", e.Instances(), e.Idle())
	}
}
