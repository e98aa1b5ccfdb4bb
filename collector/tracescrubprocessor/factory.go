// Package tracescrubprocessor is an OpenTelemetry Collector processor that
// runs the tracescrub component: it drops health-check spans and masks
// Norwegian personal identity numbers, failing closed. The component runs on
// wazero (pure Go), one isolated instance per concurrent batch.
package tracescrubprocessor // import "example.invalid/tracescrub/collector/tracescrubprocessor"

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"example.invalid/tracescrub/collector/tracescrubprocessor/internal/metadata"
)

// NewFactory returns the factory of the `tracescrub` processor.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		metadata.Type,
		createDefaultConfig,
		processor.WithTraces(createTracesProcessor, metadata.TracesStability),
	)
}

func createDefaultConfig() component.Config {
	return &Config{
		Timeout:               5 * time.Second,
		MaxMemoryMiB:          256,
		ReloadInterval:        time.Second,
		PoolSize:              defaultPoolSize(),
		MaxBatchesPerInstance: defaultMaxBatchesPerInstance,
	}
}

func createTracesProcessor(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	p, err := newProcessor(ctx, set, cfg.(*Config))
	if err != nil {
		return nil, err
	}
	return processorhelper.NewTraces(ctx, set, cfg, next, p.processTraces,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}),
		processorhelper.WithStart(p.start),
		processorhelper.WithShutdown(p.shutdown),
	)
}
