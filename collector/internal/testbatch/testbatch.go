// Package testbatch builds small, fixed OTLP batches for tests and for the
// processor's reload canary. No timestamps are taken from the clock, so the
// bytes are the same on every run.
package testbatch

import (
	"encoding/binary"
	"os"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Number is a valid, fictional fødselsnummer (check digits and date valid).
const Number = "17053650260"

// Masked is Number as the default config masks it.
const Masked = "***********"

// Span describes one span of a test batch.
type Span struct {
	Name  string
	Attrs map[string]string
	// Parent is the index of the parent span in the same batch, or -1.
	Parent int
}

// Build makes one resource, one scope and the given spans, with fixed ids.
func Build(spans ...Span) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "testbatch")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("testbatch")
	for i, s := range spans {
		sp := ss.Spans().AppendEmpty()
		sp.SetName(s.Name)
		sp.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
		sp.SetSpanID(spanID(i))
		if s.Parent >= 0 {
			sp.SetParentSpanID(spanID(s.Parent))
		}
		sp.SetKind(ptrace.SpanKindServer)
		sp.SetStartTimestamp(1_700_000_000_000_000_000)
		sp.SetEndTimestamp(1_700_000_000_001_000_000)
		for k, v := range s.Attrs {
			sp.Attributes().PutStr(k, v)
		}
	}
	return td
}

// spanID is i+1, big-endian: never all zeros, which pdata writes as no id
// at all and the engine refuses.
func spanID(i int) pcommon.SpanID {
	var id pcommon.SpanID
	binary.BigEndian.PutUint64(id[:], uint64(i)+1)
	return id
}

// Canary is one noise span and one span carrying Number in url.path: after a
// working tracescrub with the default rules, one span is left and it carries
// no Number.
func Canary() ptrace.Traces {
	return Build(
		Span{Name: "GET /isAlive", Attrs: map[string]string{"url.path": "/isAlive"}, Parent: -1},
		Span{Name: "GET /api/person", Attrs: map[string]string{"url.path": "/api/person/" + Number}, Parent: -1},
	)
}

// Marshal encodes td as an ExportTraceServiceRequest.
func Marshal(t testing.TB, td ptrace.Traces) []byte {
	t.Helper()
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Component reads the component named by $TRACESCRUB_COMPONENT, and fails the
// test with how to make it when that is unset.
func Component(t testing.TB) (string, []byte) {
	t.Helper()
	path := os.Getenv("TRACESCRUB_COMPONENT")
	if path == "" {
		t.Fatal("TRACESCRUB_COMPONENT is not set: build the component with " +
			"`cargo build --release --locked -p tracescrub && target/release/tracescrub inspect --save /tmp/tracescrub.wasm` " +
			"and run with TRACESCRUB_COMPONENT=/tmp/tracescrub.wasm")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read TRACESCRUB_COMPONENT: %v", err)
	}
	return path, b
}
