// Package metadata holds the processor's type, stability and telemetry
// scope, as mdatagen would generate them from metadata.yaml (written by hand
// to keep the build free of code generation).
package metadata

import "go.opentelemetry.io/collector/component"

var (
	// Type is the processor's key in a collector config.
	Type = component.MustNewType("tracescrub")
	// ScopeName names the processor's meter.
	ScopeName = "example.invalid/tracescrub/collector/tracescrubprocessor"
)

// TracesStability is the stability of the traces pipeline support.
const TracesStability = component.StabilityLevelAlpha
