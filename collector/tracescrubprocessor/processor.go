package tracescrubprocessor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"
	"go.uber.org/zap"

	"example.invalid/tracescrub/collector/internal/wasmhost"
)

// version is one loaded component with one config: what a batch runs on.
// A reload builds a new one and swaps the pointer; batches in flight finish
// on the old one, whose instances close as they come back.
type version struct {
	engine        *wasmhost.Engine
	componentHash string
	configHash    string
	// teams is the team file entries it was made with.
	teams map[string]any
}

// canaryTimeout bounds the canary when the batch timeout is shorter: the
// canary checks the component and config, not the timeout, and its first
// call also creates the instance.
const canaryTimeout = 10 * time.Second

type tracescrubProcessor struct {
	cfg    *Config
	logger *zap.Logger
	tel    *telemetry

	current atomic.Pointer[version]

	// The file watch (its goroutine alone uses these): lastTried remembers
	// the hashes of a version that failed to load, so a broken file is
	// reported once, not every tick; pending is the change seen last tick.
	stop      chan struct{}
	done      sync.WaitGroup
	lastTried string
	pending   string
}

func newProcessor(ctx context.Context, set processor.Settings, cfg *Config) (*tracescrubProcessor, error) {
	tel, err := newTelemetry(set.TelemetrySettings)
	if err != nil {
		return nil, fmt.Errorf("tracescrub telemetry: %w", err)
	}
	p := &tracescrubProcessor{cfg: cfg, logger: set.Logger, tel: tel, stop: make(chan struct{})}
	v, err := p.build(ctx)
	if err != nil {
		return nil, err
	}
	p.current.Store(v)
	p.logger.Info("tracescrub component loaded",
		zap.String("component", cfg.Component), zap.String("component_sha256", v.componentHash),
		zap.String("contract", wasmhost.Interface+"@"+v.engine.Version))
	return p, nil
}

// build reads the files, loads the component with the config and runs the
// canary through it.
func (p *tracescrubProcessor) build(ctx context.Context) (*version, error) {
	var last map[string]any
	if cur := p.current.Load(); cur != nil {
		last = cur.teams
	}
	src, err := p.cfg.readSource(last)
	if err != nil {
		return nil, err
	}
	if len(src.teamFailures) > 0 {
		// Names of teams (namespaces) and what broke; never a file's content.
		p.tel.teamFileFailures(ctx, len(src.teamFailures))
		p.logger.Warn("tracescrub team file(s) could not be read or parsed; each keeps its last good version, if it had one",
			zap.Strings("teams", src.teamFailures))
	}
	e, err := wasmhost.Load(ctx, p.cfg.Component, src.component, src.configJSON, p.cfg.hostOptions(p.cfg.PoolSize))
	if err != nil {
		return nil, p.cfg.explain(err)
	}
	cctx, cancel := context.WithTimeout(ctx, max(p.cfg.Timeout, canaryTimeout))
	defer cancel()
	if err := runCanary(cctx, e); err != nil {
		e.Close()
		return nil, err
	}
	return &version{engine: e, componentHash: src.componentHash, configHash: src.configHash, teams: src.teams}, nil
}

func (p *tracescrubProcessor) start(context.Context, component.Host) error {
	if p.cfg.ReloadInterval > 0 {
		p.done.Add(1)
		go p.watch()
	}
	return nil
}

func (p *tracescrubProcessor) shutdown(context.Context) error {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.done.Wait()
	if v := p.current.Swap(nil); v != nil {
		v.engine.Close()
	}
	return nil
}

// processTraces runs one batch through the component. It fails closed: when
// the component cannot process the batch, the batch goes nowhere.
func (p *tracescrubProcessor) processTraces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	in, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		p.tel.batch(ctx, outcomeError)
		return td, fmt.Errorf("tracescrub: encode batch: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	started := time.Now()
	out, err := p.process(cctx, in)
	p.tel.duration.Record(ctx, time.Since(started).Seconds())
	if err != nil {
		outcome := outcomeOf(err)
		p.tel.batch(ctx, outcome)
		// The error carries no span content: the component's reasons name
		// offsets and fields, never values.
		p.logger.Warn("tracescrub refused a batch; it is not passed on",
			zap.String("outcome", outcome), zap.Int("batch_bytes", len(in)), zap.Error(err))
		var ge *wasmhost.GuestError
		if errors.As(err, &ge) && ge.Permanent() {
			return td, consumererror.NewPermanent(fmt.Errorf("tracescrub: %w", err))
		}
		return td, fmt.Errorf("tracescrub: %w", err)
	}
	p.tel.batch(ctx, outcomeProcessed)
	p.tel.recordStats(ctx, &out.Stats)
	res, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(out.Batch)
	if err != nil {
		// Never expected: the component writes valid OTLP. Fail closed.
		return td, fmt.Errorf("tracescrub: the component's output does not decode (a bug in tracescrub): %w", err)
	}
	if res.SpanCount() == 0 {
		return res, processorhelper.ErrSkipProcessingData
	}
	return res, nil
}

// process runs on the current version, retrying once if a reload closed it
// between loading the pointer and taking an instance.
func (p *tracescrubProcessor) process(ctx context.Context, in []byte) (*wasmhost.Output, error) {
	for range 3 {
		v := p.current.Load()
		if v == nil {
			return nil, errors.New("processor is shut down")
		}
		out, err := v.engine.Process(ctx, in)
		if errors.Is(err, wasmhost.ErrClosed) {
			continue
		}
		return out, err
	}
	return nil, wasmhost.ErrClosed
}
