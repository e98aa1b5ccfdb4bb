package tracescrubprocessor

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"example.invalid/tracescrub/collector/internal/wasmhost"
)

// canaryNumber is a valid, fictional fødselsnummer.
const canaryNumber = "17053650260"

// canaryBatch is like real traffic: a health check, and a request with a
// personal number in its path. Fixed ids and times: the same bytes each run.
func canaryBatch() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "tracescrub-canary")
	ss := rs.ScopeSpans().AppendEmpty()
	for i, path := range []string{"/isAlive", "/api/person/" + canaryNumber} {
		sp := ss.Spans().AppendEmpty()
		sp.SetName("GET")
		sp.SetKind(ptrace.SpanKindServer)
		sp.SetTraceID(pcommon.TraceID{0xca, 0x7a, 0x21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
		sp.SetSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, byte(i + 1)})
		sp.SetStartTimestamp(1_700_000_000_000_000_000)
		sp.SetEndTimestamp(1_700_000_000_001_000_000)
		sp.Attributes().PutStr("url.path", path)
	}
	return td
}

// effective is the part of the effective config the canary's expectations
// depend on.
type effective struct {
	Noise struct {
		Enabled bool     `json:"enabled"`
		Globs   []string `json:"globs"`
		Sources struct {
			Attributes []string `json:"attributes"`
		} `json:"sources"`
	} `json:"noise"`
	Mask struct {
		Enabled bool `json:"enabled"`
		Scope   struct {
			Fields []string `json:"fields"`
			Keys   []string `json:"keys"`
		} `json:"scope"`
	} `json:"mask"`
}

// runCanary checks a new version on the canary batch before it serves: the
// output must decode and agree with the stats, and, where the config's rules
// cover them (the default rules do), the health check must be gone and the
// number masked.
func runCanary(ctx context.Context, e *wasmhost.Engine) error {
	in, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(canaryBatch())
	if err != nil {
		return canaryError("encode: %v", err)
	}
	out, err := e.Process(ctx, in)
	if err != nil {
		return canaryError("%v", err)
	}
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(out.Batch)
	if err != nil {
		return canaryError("the output is not valid OTLP: %v", err)
	}
	s := out.Stats
	if s.SpansIn != 2 || s.SpansOut+s.SpansDropped != s.SpansIn || uint64(td.SpanCount()) != s.SpansOut {
		return canaryError("stats spans_in=%d spans_out=%d spans_dropped=%d disagree with the %d spans out of 2 in",
			s.SpansIn, s.SpansOut, s.SpansDropped, td.SpanCount())
	}
	effJSON, err := e.EffectiveConfig(ctx)
	if err != nil {
		return canaryError("effective-config: %v", err)
	}
	var eff effective
	if err := json.Unmarshal([]byte(effJSON), &eff); err != nil {
		return canaryError("effective-config is not the expected JSON: %v", err)
	}
	wantDrop := eff.Noise.Enabled && slices.Contains(eff.Noise.Sources.Attributes, "url.path") &&
		slices.ContainsFunc(eff.Noise.Globs, func(g string) bool { return strings.EqualFold(g, "*/isAlive") })
	wantMask := eff.Mask.Enabled && slices.Contains(eff.Mask.Scope.Fields, "span-attribute") && eff.Mask.Scope.Keys == nil
	var sawNoise, sawNumber bool
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				if v, ok := sp.Attributes().Get("url.path"); ok {
					sawNoise = sawNoise || v.Str() == "/isAlive"
					sawNumber = sawNumber || strings.Contains(v.Str(), canaryNumber)
				}
			}
		}
	}
	if wantDrop && sawNoise {
		return canaryError("the health-check span was not dropped")
	}
	if wantMask && sawNumber {
		return canaryError("the personal number was not masked")
	}
	return nil
}
