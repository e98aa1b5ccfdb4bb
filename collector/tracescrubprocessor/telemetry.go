package tracescrubprocessor

import (
	"context"
	"errors"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"example.invalid/tracescrub/collector/internal/wasmhost"
	"example.invalid/tracescrub/collector/tracescrubprocessor/internal/metadata"
)

// Batch outcomes, the `outcome` attribute of ..._batches.
const (
	outcomeProcessed     = "ok"
	outcomeMalformed     = "malformed_batch"
	outcomeTooLarge      = "batch_too_large"
	outcomeInvalidConfig = "invalid_config"
	outcomeOutOfMemory   = "out_of_memory"
	outcomeDeadline      = "deadline"
	outcomeTrap          = "trap"
	outcomeError         = "error"
)

// descendantRule is the `rule` of spans dropped only for a noisy ancestor.
const descendantRule = "descendant"

// telemetry is the processor's metrics, named like the collector's own
// processor metrics (otelcol_processor_<type>_<what>).
type telemetry struct {
	batches       metric.Int64Counter
	spansDropped  metric.Int64Counter
	masked        metric.Int64Counter
	maskedByField metric.Int64Counter
	duration      metric.Float64Histogram
	reloads       metric.Int64Counter
	teamFailures  metric.Int64Counter
}

func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	m := set.MeterProvider.Meter(metadata.ScopeName)
	t := &telemetry{}
	var errs, err error
	t.batches, err = m.Int64Counter("otelcol_processor_tracescrub_batches",
		metric.WithDescription("Batches handled by the tracescrub processor, by outcome."), metric.WithUnit("{batch}"))
	errs = errors.Join(errs, err)
	t.spansDropped, err = m.Int64Counter("otelcol_processor_tracescrub_spans_dropped",
		metric.WithDescription("Spans dropped by the tracescrub processor, by rule."), metric.WithUnit("{span}"))
	errs = errors.Join(errs, err)
	t.masked, err = m.Int64Counter("otelcol_processor_tracescrub_values_masked",
		metric.WithDescription("Personal numbers masked by the tracescrub processor, by detector."), metric.WithUnit("{value}"))
	errs = errors.Join(errs, err)
	t.maskedByField, err = m.Int64Counter("otelcol_processor_tracescrub_values_masked_by_field",
		metric.WithDescription("Personal numbers masked by the tracescrub processor, by field kind."), metric.WithUnit("{value}"))
	errs = errors.Join(errs, err)
	t.duration, err = m.Float64Histogram("otelcol_processor_tracescrub_processing_duration",
		metric.WithDescription("Time per batch in the tracescrub component, copies in and out included."), metric.WithUnit("s"),
		// A batch takes about 0.1 to 50 ms; the SDK's default buckets (0, 5,
		// 10, ... 10000) are meant for milliseconds and would put all in one.
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
	errs = errors.Join(errs, err)
	t.reloads, err = m.Int64Counter("otelcol_processor_tracescrub_reloads",
		metric.WithDescription("Reloads by the tracescrub processor's file watch, by outcome."), metric.WithUnit("{reload}"))
	errs = errors.Join(errs, err)
	t.teamFailures, err = m.Int64Counter("otelcol_processor_tracescrub_team_file_failures",
		metric.WithDescription("Team files that could not be read or parsed at a load; each team keeps its last good version."), metric.WithUnit("{file}"))
	errs = errors.Join(errs, err)
	return t, errs
}

func (t *telemetry) teamFileFailures(ctx context.Context, n int) {
	t.teamFailures.Add(ctx, int64(n))
}

func (t *telemetry) recordStats(ctx context.Context, s *wasmhost.Stats) {
	for _, c := range s.DroppedByRule {
		t.spansDropped.Add(ctx, int64(c.Value), metric.WithAttributes(attribute.String("rule", c.Name)))
	}
	if s.DroppedDescendants > 0 {
		t.spansDropped.Add(ctx, int64(s.DroppedDescendants), metric.WithAttributes(attribute.String("rule", descendantRule)))
	}
	for _, c := range s.MaskedByDetector {
		t.masked.Add(ctx, int64(c.Value), metric.WithAttributes(attribute.String("detector", c.Name)))
	}
	for _, c := range s.MaskedByField {
		t.maskedByField.Add(ctx, int64(c.Value), metric.WithAttributes(attribute.String("field", c.Name)))
	}
}

func (t *telemetry) batch(ctx context.Context, outcome string) {
	t.batches.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

func (t *telemetry) reload(ctx context.Context, ok bool) {
	outcome := "success"
	if !ok {
		outcome = "failure"
	}
	t.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

// outcomeOf names a failed batch's outcome.
func outcomeOf(err error) string {
	var ge *wasmhost.GuestError
	var te *wasmhost.TrapError
	switch {
	case errors.As(err, &ge):
		switch ge.Kind {
		case wasmhost.KindMalformedBatch:
			return outcomeMalformed
		case wasmhost.KindBatchTooLarge:
			return outcomeTooLarge
		case wasmhost.KindInvalidConfig:
			return outcomeInvalidConfig
		case wasmhost.KindOutOfMemory:
			return outcomeOutOfMemory
		}
	case errors.As(err, &te):
		if te.Deadline {
			return outcomeDeadline
		}
		if te.NearMemoryCap() {
			return outcomeOutOfMemory
		}
		return outcomeTrap
	}
	return outcomeError
}
