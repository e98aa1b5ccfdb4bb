package tracescrubprocessor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	keyHash       string
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
	lastTried fileState
	pending   fileState
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
	e, err := p.load(ctx, src, last)
	if err != nil {
		return nil, p.cfg.explain(err)
	}
	if len(src.teamFailures) > 0 {
		// Team names (namespaces) only; never a file's content.
		p.tel.teamFileFailures(ctx, len(src.teamFailures))
		p.logger.Warn("tracescrub team file(s) have problems; each keeps its last good version, if it had one",
			zap.Strings("teams", src.teamFailures))
	}
	cctx, cancel := context.WithTimeout(ctx, max(p.cfg.Timeout, canaryTimeout))
	defer cancel()
	if err := runCanary(cctx, e); err != nil {
		e.Close()
		return nil, err
	}
	return &version{engine: e, componentHash: src.componentHash, configHash: src.configHash, keyHash: src.keyHash, teams: src.teams}, nil
}

// load loads the component with src's config. With team files it first
// sets teams.strict, which makes a team file's problems config problems
// (the component otherwise leaves that file out, silently to this host):
// each team with problems then keeps its entry in last, its last good
// version, and the component is loaded again. src's teams and failures are
// updated to match.
func (p *tracescrubProcessor) load(ctx context.Context, src *source, last map[string]any) (*wasmhost.Engine, error) {
	opts := p.cfg.hostOptions(p.cfg.PoolSize)
	if len(src.teams) == 0 {
		return wasmhost.Load(ctx, p.cfg.Component, src.component, src.configJSON, opts)
	}
	strict, doc, err := strictTeams(src.configJSON)
	if err != nil {
		return nil, err
	}
	e, err := wasmhost.Load(ctx, p.cfg.Component, src.component, strict, opts)
	var ge *wasmhost.GuestError
	if err == nil || !errors.As(err, &ge) || ge.Kind != wasmhost.KindInvalidConfig {
		return e, err
	}
	failed := teamsWithProblems(src.teams, ge.Problems)
	if failed == nil {
		// A problem of the platform's own: the plain load says which.
		return wasmhost.Load(ctx, p.cfg.Component, src.component, src.configJSON, opts)
	}
	for _, name := range failed {
		if good, ok := last[name]; ok {
			src.teams[name] = good
		}
		if !slices.Contains(src.teamFailures, name) {
			src.teamFailures = append(src.teamFailures, name)
		}
	}
	slices.Sort(src.teamFailures)
	teams := doc["teams"].(map[string]any)
	delete(teams, "strict")
	teams["files"] = src.teams
	plain, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	src.configJSON = string(plain)
	return wasmhost.Load(ctx, p.cfg.Component, src.component, src.configJSON, opts)
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
