package wasmhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Options are the host's limits for one loaded component.
type Options struct {
	// MaxMemoryMiB caps each instance's linear memory.
	MaxMemoryMiB uint32
	// CacheDir holds compiled modules, so an unchanged component is compiled
	// once per machine, not once per start or reload. Empty means no cache.
	CacheDir string
	// PoolSize is the most instances that run at once; callers beyond it wait.
	PoolSize int
	// MaxBatchesPerInstance is how many batches an instance processes before
	// it is discarded, so one batch's data does not sit in guest memory
	// (freed, not wiped) while later batches run; the next batch gets a fresh
	// instance. 0 discards an instance only after a trap.
	MaxBatchesPerInstance int
}

// ErrClosed is returned by an Engine that was closed (for example swapped out
// by a reload) before the call took an instance; the caller retries on the
// current engine.
var ErrClosed = errors.New("tracescrub engine is closed")

// TrapError is a call that did not return normally: the component trapped,
// ran out of memory under the host's cap, or passed its deadline. The instance
// it ran on was discarded. The same input may succeed on a fresh instance.
type TrapError struct {
	// Deadline is true when the call was stopped by its context.
	Deadline bool
	// Call is the export that was running.
	Call string
	// MemoryBytes and CapBytes are the instance's linear memory at the trap
	// and its cap. A Rust guest that cannot grow its memory aborts with
	// `unreachable`, so a trap with memory near the cap is most likely the
	// cap, not a bug.
	MemoryBytes, CapBytes uint64
	// CopyBytes is the size of the argument being copied in when the trap
	// came from allocating room for it.
	CopyBytes uint64
	Err       error
}

// NearMemoryCap says whether the trap was most likely the memory cap: at
// least half the cap in use (a doubling buffer fails there first), or no
// room under the cap for the argument being copied in.
func (e *TrapError) NearMemoryCap() bool {
	return !e.Deadline && e.CapBytes > 0 && (e.MemoryBytes*2 >= e.CapBytes || e.MemoryBytes+e.CopyBytes > e.CapBytes)
}

func (e *TrapError) Error() string {
	if e.Call == waitCall {
		return fmt.Sprintf("deadline passed while waiting for a free instance (all pool_size instances busy): %v", e.Err)
	}
	if e.Deadline {
		return fmt.Sprintf("%s stopped at its deadline (instance discarded): %v", e.Call, e.Err)
	}
	if e.NearMemoryCap() {
		return fmt.Sprintf("%s trapped with %d of its %d MiB memory cap in use (instance discarded): most likely out of memory: raise max_memory_mib or send smaller batches: %v",
			e.Call, e.MemoryBytes>>20, e.CapBytes>>20, e.Err)
	}
	return fmt.Sprintf("%s trapped (instance discarded; a trap is a bug in the component, please report it): %v", e.Call, e.Err)
}

func (e *TrapError) Unwrap() error { return e.Err }

// waitCall is TrapError.Call when the deadline passed before any call.
const waitCall = "waiting for a free instance"

var (
	cacheMu sync.Mutex
	caches  = map[string]wazero.CompilationCache{}
)

// sharedCache returns the process's one compilation cache for dir. wazero
// keys entries by the module's hash and its own version, so a changed
// component or wazero never hits a stale entry.
func sharedCache(dir string) (wazero.CompilationCache, error) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if c, ok := caches[dir]; ok {
		return c, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create compile cache dir %q: %w (set cache_dir or TRACESCRUB_CACHE_DIR to a writable directory)", dir, err)
	}
	c, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open compile cache dir %q: %w", dir, err)
	}
	caches[dir] = c
	return c, nil
}

// DefaultCacheDir is $TRACESCRUB_CACHE_DIR, else the user cache dir's
// tracescrub/wazero, else a directory under the system temp dir.
func DefaultCacheDir() string {
	if d := os.Getenv("TRACESCRUB_CACHE_DIR"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "tracescrub", "wazero")
	}
	return filepath.Join(os.TempDir(), "tracescrub-wazero-cache")
}

// exports are the core exports this host calls, for one contract version.
type exports struct {
	prefix      string // "tracescrub:processor/transform@0.1.0#"
	create      string
	process     string
	effective   string
	dtor        string
	postCreate  string
	postProcess string
	postEff     string
	importMod   string
}

func exportsFor(version string) exports {
	p := Interface + "@" + version
	e := exports{
		prefix:    p + "#",
		create:    p + "#[static]processor.create",
		process:   p + "#[method]processor.process",
		effective: p + "#[method]processor.effective-config",
		dtor:      p + "#[dtor]processor",
		importMod: "[export]" + p,
	}
	e.postCreate = "cabi_post_" + e.create
	e.postProcess = "cabi_post_" + e.process
	e.postEff = "cabi_post_" + e.effective
	return e
}

var (
	i32 = api.ValueTypeI32
)

// Engine is one loaded version: a component, its config, its compiled core
// module and a pool of instances, each holding one `processor` made from the
// config. It is safe for concurrent use; each call runs on its own instance.
type Engine struct {
	// Version is the contract version the component exports, e.g. "0.1.0".
	Version string
	// ComponentSHA256 is the hex sha256 of the component file's bytes.
	ComponentSHA256 string

	rt     wazero.Runtime
	cm     wazero.CompiledModule
	ex     exports
	config string
	sem    chan struct{}
	// maxBatches is Options.MaxBatchesPerInstance.
	maxBatches int

	mu       sync.Mutex
	idle     []*instance
	live     int
	closed   bool
	rtClosed bool
	capPages uint32
	// made counts instances created, the first included.
	made int
}

// Load compiles a component and creates one processor with configJSON, so a
// bad component or config fails here, not on the first batch. path is only
// used in messages.
func Load(ctx context.Context, path string, component []byte, configJSON string, opts Options) (*Engine, error) {
	p, err := parseComponent(component)
	if err != nil {
		var ce *ContractError
		if errors.As(err, &ce) {
			ce2 := *ce
			ce2.Path = path
			return nil, &ce2
		}
		return nil, err
	}
	if opts.PoolSize < 1 {
		opts.PoolSize = 1
	}
	if opts.MaxMemoryMiB == 0 {
		opts.MaxMemoryMiB = 256
	}
	rc := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(opts.MaxMemoryMiB * 16) // 64 KiB pages
	if opts.CacheDir != "" {
		c, err := sharedCache(opts.CacheDir)
		if err != nil {
			return nil, err
		}
		rc = rc.WithCompilationCache(c)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	e := &Engine{
		Version:         p.version,
		ComponentSHA256: sha256hex(component),
		rt:              rt,
		ex:              exportsFor(p.version),
		config:          configJSON,
		sem:             make(chan struct{}, opts.PoolSize),
		maxBatches:      opts.MaxBatchesPerInstance,
		capPages:        opts.MaxMemoryMiB * 16,
	}
	fail := func(err error) (*Engine, error) {
		_ = rt.Close(ctx)
		return nil, err
	}
	cm, err := rt.CompileModule(ctx, p.core)
	if err != nil {
		return fail(&ContractError{Path: path, Reason: fmt.Sprintf("core module does not compile: %v", err)})
	}
	e.cm = cm
	if err := e.checkCore(path); err != nil {
		return fail(err)
	}
	if err := e.instantiateHost(ctx); err != nil {
		return fail(err)
	}
	inst, err := e.newInstance(ctx)
	if err != nil {
		return fail(err)
	}
	e.idle = append(e.idle, inst)
	e.live = 1
	return e, nil
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// checkCore checks that the core module exports what we call with the
// signatures we call it with, and imports only what we provide.
func (e *Engine) checkCore(path string) error {
	bad := func(format string, args ...any) error {
		return &ContractError{Path: path, Reason: fmt.Sprintf(format, args...) +
			fmt.Sprintf("; this processor needs %s@0.1.x (built for %s)", Interface, BuiltFor)}
	}
	fns := e.cm.ExportedFunctions()
	type sig struct {
		name     string
		params   int
		results  int
		optional bool
	}
	want := []sig{
		{"cabi_realloc", 4, 1, false},
		{e.ex.create, 2, 1, false},
		{e.ex.process, 3, 1, false},
		{e.ex.effective, 1, 1, false},
		{e.ex.dtor, 1, 0, true},
		{e.ex.postCreate, 1, 0, true},
		{e.ex.postProcess, 1, 0, true},
		{e.ex.postEff, 1, 0, true},
	}
	for _, w := range want {
		def, ok := fns[w.name]
		if !ok {
			if w.optional {
				continue
			}
			return bad("core module does not export %q", w.name)
		}
		if !allI32(def.ParamTypes(), w.params) || !allI32(def.ResultTypes(), w.results) {
			return bad("core export %q has signature %v -> %v, want %d i32 params and %d i32 results",
				w.name, def.ParamTypes(), def.ResultTypes(), w.params, w.results)
		}
	}
	if _, ok := e.cm.ExportedMemories()["memory"]; !ok {
		return bad("core module exports no memory named \"memory\"")
	}
	for _, def := range e.cm.ImportedFunctions() {
		mod, name, _ := def.Import()
		if mod != e.ex.importMod {
			return bad("core module imports %s.%s, which this host does not provide", mod, name)
		}
		switch name {
		case "[resource-new]processor", "[resource-rep]processor":
			if !allI32(def.ParamTypes(), 1) || !allI32(def.ResultTypes(), 1) {
				return bad("core import %q has the wrong signature", name)
			}
		case "[resource-drop]processor":
			if !allI32(def.ParamTypes(), 1) || !allI32(def.ResultTypes(), 0) {
				return bad("core import %q has the wrong signature", name)
			}
		default:
			return bad("core module imports %s.%s, which this host does not provide", mod, name)
		}
	}
	for _, def := range e.cm.ImportedMemories() {
		mod, name, _ := def.Import()
		return bad("core module imports memory %s.%s; a tracescrub component imports nothing", mod, name)
	}
	return nil
}

func allI32(ts []api.ValueType, n int) bool {
	if len(ts) != n {
		return false
	}
	for _, t := range ts {
		if t != i32 {
			return false
		}
	}
	return true
}

// handleTable is one instance's table of `processor` handles, the component
// model's resource table for the one resource type the component defines.
// An instance is used by one goroutine at a time, so it needs no lock.
type handleTable struct {
	reps map[uint32]uint32
	next uint32
}

type tableKey struct{}

func tableFrom(ctx context.Context) *handleTable {
	t, _ := ctx.Value(tableKey{}).(*handleTable)
	return t
}

// instantiateHost provides the resource intrinsics the core module imports.
// They are shared by every instance of this runtime; each call finds its own
// instance's handle table in the call's context.
func (e *Engine) instantiateHost(ctx context.Context) error {
	b := e.rt.NewHostModuleBuilder(e.ex.importMod)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
		t := tableFrom(ctx)
		if t == nil {
			panic("resource-new called outside a host call")
		}
		// Handle 0 is never valid in the canonical ABI.
		t.next++
		t.reps[t.next] = api.DecodeU32(stack[0])
		stack[0] = api.EncodeU32(t.next)
	}), []api.ValueType{i32}, []api.ValueType{i32}).Export("[resource-new]processor")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
		t := tableFrom(ctx)
		if t == nil {
			panic("resource-rep called outside a host call")
		}
		rep, ok := t.reps[api.DecodeU32(stack[0])]
		if !ok {
			panic(fmt.Sprintf("resource-rep of unknown handle %d", api.DecodeU32(stack[0])))
		}
		stack[0] = api.EncodeU32(rep)
	}), []api.ValueType{i32}, []api.ValueType{i32}).Export("[resource-rep]processor")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
		t := tableFrom(ctx)
		if t == nil {
			panic("resource-drop called outside a host call")
		}
		h := api.DecodeU32(stack[0])
		rep, ok := t.reps[h]
		if !ok {
			panic(fmt.Sprintf("resource-drop of unknown handle %d", h))
		}
		delete(t.reps, h)
		// Dropping the last own handle of a resource this component defines
		// runs its destructor (CanonicalABI.md, canon resource.drop).
		if dtor := mod.ExportedFunction(e.ex.dtor); dtor != nil {
			if _, err := dtor.Call(ctx, uint64(rep)); err != nil {
				panic(err)
			}
		}
	}), []api.ValueType{i32}, nil).Export("[resource-drop]processor")
	_, err := b.Instantiate(ctx)
	if err != nil {
		return fmt.Errorf("provide the component's resource intrinsics: %w", err)
	}
	return nil
}

// instance is one core-module instance holding one processor.
type instance struct {
	mod                         api.Module
	realloc, process, effective api.Function
	postProcess, postEff, dtor  api.Function
	table                       *handleTable
	capBytes                    uint64
	rep                         uint32
	broken                      bool
	// used counts the batches this instance was handed.
	used int
}

// newInstance instantiates the core module and creates the processor.
func (e *Engine) newInstance(ctx context.Context) (*instance, error) {
	table := &handleTable{reps: map[uint32]uint32{}}
	ctx = context.WithValue(ctx, tableKey{}, table)
	mod, err := e.rt.InstantiateModule(ctx, e.cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return nil, fmt.Errorf("instantiate the component (memory cap too small? raise max_memory_mib): %w", err)
	}
	inst := &instance{
		mod:         mod,
		realloc:     mod.ExportedFunction("cabi_realloc"),
		process:     mod.ExportedFunction(e.ex.process),
		effective:   mod.ExportedFunction(e.ex.effective),
		postProcess: mod.ExportedFunction(e.ex.postProcess),
		postEff:     mod.ExportedFunction(e.ex.postEff),
		dtor:        mod.ExportedFunction(e.ex.dtor),
		table:       table,
		capBytes:    uint64(e.capPages) * 65536,
	}
	ptr, n, err := inst.write(ctx, []byte(e.config), 1, "create")
	if err != nil {
		_ = mod.Close(ctx)
		return nil, err
	}
	res, err := inst.call(ctx, "create", mod.ExportedFunction(e.ex.create), uint64(ptr), uint64(n))
	if err != nil {
		_ = mod.Close(ctx)
		return nil, err
	}
	ret := uint64(api.DecodeU32(res))
	m := inst.mem()
	var gerr *GuestError
	var handle uint32
	if m.u8(ret) == 0 {
		handle = m.u32(ret + resultPayload)
	} else {
		gerr = m.guestError(ret + resultPayload)
	}
	if m.err != nil {
		_ = mod.Close(ctx)
		return nil, m.err
	}
	if post := mod.ExportedFunction(e.ex.postCreate); post != nil {
		if _, err := inst.call(ctx, "create", post, ret); err != nil {
			_ = mod.Close(ctx)
			return nil, err
		}
	}
	if gerr != nil {
		_ = mod.Close(ctx)
		return nil, gerr
	}
	rep, ok := table.reps[handle]
	if !ok {
		_ = mod.Close(ctx)
		return nil, fmt.Errorf("create returned handle %d that the component never made", handle)
	}
	inst.rep = rep
	e.mu.Lock()
	e.made++
	e.mu.Unlock()
	return inst, nil
}

func (in *instance) mem() *guestMem {
	m := in.mod.Memory()
	b, _ := m.Read(0, m.Size())
	return &guestMem{b: b}
}

// call runs one export with the instance's handle table in reach. Any error
// is a trap or a stop: the instance is marked broken and never reused.
func (in *instance) call(ctx context.Context, what string, fn api.Function, args ...uint64) (uint64, error) {
	ctx = context.WithValue(ctx, tableKey{}, in.table)
	res, err := fn.Call(ctx, args...)
	if err != nil {
		in.broken = true
		te := &TrapError{Deadline: ctx.Err() != nil, Call: what, CapBytes: in.capBytes, Err: err}
		if m := in.mod.Memory(); m != nil {
			te.MemoryBytes = uint64(m.Size())
		}
		return 0, te
	}
	if len(res) == 0 {
		return 0, nil
	}
	return res[0], nil
}

// write copies b into guest memory allocated with cabi_realloc.
func (in *instance) write(ctx context.Context, b []byte, align uint64, what string) (uint32, uint32, error) {
	// An argument as large as the whole memory cap cannot fit (and one over
	// 4 GiB cannot even be passed as an i32): refuse it without a call, so
	// the instance stays usable.
	if uint64(len(b)) >= in.capBytes {
		return 0, 0, &GuestError{Kind: KindOutOfMemory, What: fmt.Sprintf("a copy of the %d-byte %s argument", len(b), what)}
	}
	res, err := in.call(ctx, what, in.realloc, 0, 0, align, uint64(len(b)))
	if err != nil {
		var te *TrapError
		if errors.As(err, &te) {
			te.CopyBytes = uint64(len(b))
		}
		return 0, 0, err
	}
	ptr := api.DecodeU32(res)
	if len(b) > 0 && !in.mod.Memory().Write(ptr, b) {
		in.broken = true
		return 0, 0, fmt.Errorf("%s: cabi_realloc returned %d, out of bounds for %d bytes", what, ptr, len(b))
	}
	return ptr, uint32(len(b)), nil
}

func (in *instance) runProcess(ctx context.Context, batch []byte) (*Output, error) {
	ptr, n, err := in.write(ctx, batch, 1, "process")
	if err != nil {
		return nil, err
	}
	res, err := in.call(ctx, "process", in.process, uint64(in.rep), uint64(ptr), uint64(n))
	if err != nil {
		return nil, err
	}
	ret := uint64(api.DecodeU32(res))
	m := in.mem()
	var out *Output
	var gerr *GuestError
	if m.u8(ret) == 0 {
		p := ret + resultPayload
		out = &Output{Batch: m.bytes(p + outputBatch), Stats: m.stats(p + outputStats)}
	} else {
		gerr = m.guestError(ret + resultPayload)
	}
	if m.err != nil {
		in.broken = true
		return nil, m.err
	}
	if in.postProcess != nil {
		if _, err := in.call(ctx, "process", in.postProcess, ret); err != nil {
			return nil, err
		}
	}
	if gerr != nil {
		return nil, gerr
	}
	return out, nil
}

func (in *instance) runEffective(ctx context.Context) (string, error) {
	res, err := in.call(ctx, "effective-config", in.effective, uint64(in.rep))
	if err != nil {
		return "", err
	}
	ret := uint64(api.DecodeU32(res))
	m := in.mem()
	s := m.str(ret)
	if m.err != nil {
		in.broken = true
		return "", m.err
	}
	if in.postEff != nil {
		if _, err := in.call(ctx, "effective-config", in.postEff, ret); err != nil {
			return "", err
		}
	}
	return s, nil
}

// close drops the processor (when the instance is healthy) and frees the
// instance.
func (in *instance) close(ctx context.Context) {
	if !in.broken && in.dtor != nil {
		_, _ = in.call(ctx, "dtor", in.dtor, uint64(in.rep))
	}
	_ = in.mod.Close(ctx)
}

// acquire takes an idle instance, or makes one while under the pool size.
func (e *Engine) acquire(ctx context.Context) (*instance, error) {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, &TrapError{Deadline: true, Call: waitCall, Err: ctx.Err()}
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		<-e.sem
		return nil, ErrClosed
	}
	if n := len(e.idle); n > 0 {
		inst := e.idle[n-1]
		e.idle = e.idle[:n-1]
		e.mu.Unlock()
		return inst, nil
	}
	e.live++
	e.mu.Unlock()
	// A fresh instance runs create under the caller's deadline too.
	inst, err := e.newInstance(ctx)
	if err != nil {
		e.mu.Lock()
		e.live--
		e.mu.Unlock()
		<-e.sem
		e.maybeCloseRuntime()
		return nil, err
	}
	return inst, nil
}

// release returns an instance to the pool, or discards it if it is broken,
// has processed its max batches, or the engine was closed meanwhile. A spent
// instance goes now, not when the next batch comes, so the last batch's data
// leaves with it; the next acquire makes a fresh one.
func (e *Engine) release(inst *instance) {
	e.mu.Lock()
	spent := e.maxBatches > 0 && inst.used >= e.maxBatches
	discard := inst.broken || spent || e.closed
	if discard {
		e.live--
	} else {
		e.idle = append(e.idle, inst)
	}
	e.mu.Unlock()
	if discard {
		inst.close(context.Background())
	}
	<-e.sem
	e.maybeCloseRuntime()
}

func (e *Engine) maybeCloseRuntime() {
	e.mu.Lock()
	done := e.closed && e.live == 0 && !e.rtClosed
	if done {
		e.rtClosed = true
	}
	e.mu.Unlock()
	if done {
		_ = e.rt.Close(context.Background())
	}
}

// Process runs one batch on an instance of its own. ctx's deadline stops the
// call; the instance is then discarded.
func (e *Engine) Process(ctx context.Context, batch []byte) (*Output, error) {
	inst, err := e.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer e.release(inst)
	// Every batch counts, one the component refuses too: its bytes were
	// copied into the guest all the same.
	inst.used++
	return inst.runProcess(ctx, batch)
}

// EffectiveConfig returns the config with every default filled in, as JSON.
func (e *Engine) EffectiveConfig(ctx context.Context) (string, error) {
	inst, err := e.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer e.release(inst)
	return inst.runEffective(ctx)
}

// Idle reports how many instances wait in the pool (for tests).
func (e *Engine) Idle() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.idle)
}

// Instances reports how many instances were created so far, the first
// included (for tests).
func (e *Engine) Instances() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.made
}

// Close stops handing out instances. Idle instances close now, busy ones
// when their call returns, and the runtime with the last of them.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	idle := e.idle
	e.idle = nil
	e.live -= len(idle)
	e.mu.Unlock()
	for _, inst := range idle {
		inst.close(context.Background())
	}
	e.maybeCloseRuntime()
}
