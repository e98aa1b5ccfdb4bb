package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"example.invalid/tracescrub/collector/internal/testbatch"
)

func load(t testing.TB, config string, opts Options) *Engine {
	t.Helper()
	path, comp := testbatch.Component(t)
	if opts.CacheDir == "" {
		opts.CacheDir = sharedTestCache(t)
	}
	e, err := Load(context.Background(), path, comp, config, opts)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// sharedTestCache keeps one compile cache for the package's tests, so only
// the first test pays for compiling.
func sharedTestCache(t testing.TB) string {
	return filepath.Join(os.TempDir(), "tracescrub-collector-test-cache")
}

// Scenario: create with the defaults, then a batch with a health check and
// a personal number in a path.
// Guarantees: the noise span is dropped, the number masked, and every stats
// field and list is read from the right offset.
func TestProcessDropsAndMasksWithExactStats(t *testing.T) {
	e := load(t, "{}", Options{PoolSize: 1})
	if e.Version != "0.1.0" {
		t.Fatalf("version %q", e.Version)
	}
	in := testbatch.Marshal(t, testbatch.Build(
		testbatch.Span{Name: "GET /isAlive", Attrs: map[string]string{"url.path": "/isAlive"}, Parent: -1},
		testbatch.Span{Name: "db ping", Parent: 0},
		testbatch.Span{Name: "GET /api/person", Attrs: map[string]string{"url.path": "/api/person/" + testbatch.Number}, Parent: -1},
	))
	out, err := e.Process(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	s := out.Stats
	if s.SpansIn != 3 || s.SpansOut != 1 || s.SpansDropped != 2 || s.DroppedDescendants != 1 || s.ValuesMasked != 1 {
		t.Fatalf("stats %+v", s)
	}
	if len(s.DroppedByRule) != 1 || s.DroppedByRule[0] != (Count{"*/isAlive", 1}) {
		t.Fatalf("dropped by rule %+v", s.DroppedByRule)
	}
	if len(s.MaskedByDetector) != 1 || s.MaskedByDetector[0] != (Count{"fnr", 1}) {
		t.Fatalf("masked by detector %+v", s.MaskedByDetector)
	}
	if len(s.MaskedByField) != 1 || s.MaskedByField[0] != (Count{"span-attribute", 1}) {
		t.Fatalf("masked by field %+v", s.MaskedByField)
	}
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(out.Batch)
	if err != nil {
		t.Fatal(err)
	}
	sp := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	if got, _ := sp.Attributes().Get("url.path"); got.Str() != "/api/person/"+testbatch.Masked {
		t.Fatalf("url.path %q", got.Str())
	}
}

// Scenario: a batch with nothing to change.
// Guarantees: the output is the input, byte for byte.
func TestUnchangedBatchIsByteIdentical(t *testing.T) {
	e := load(t, "{}", Options{PoolSize: 1})
	in := testbatch.Marshal(t, testbatch.Build(testbatch.Span{Name: "GET /orders", Attrs: map[string]string{"url.path": "/orders/42"}, Parent: -1}))
	out, err := e.Process(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Batch) != string(in) || out.Stats.SpansOut != 1 || len(out.Stats.DroppedByRule) != 0 {
		t.Fatalf("changed: %+v", out.Stats)
	}
}

// Scenario: a config with two problems.
// Guarantees: create returns invalid-config listing both, with key paths.
func TestCreateWithBadConfigListsProblemsWithKeyPaths(t *testing.T) {
	path, comp := testbatch.Component(t)
	_, err := Load(context.Background(), path, comp, `{"noise":{"globs":["[oops"]},"bogus":1}`, Options{CacheDir: sharedTestCache(t)})
	var ge *GuestError
	if !errors.As(err, &ge) || ge.Kind != KindInvalidConfig {
		t.Fatalf("want invalid-config, got %v", err)
	}
	paths := []string{}
	for _, p := range ge.Problems {
		paths = append(paths, p.Path)
		if p.Reason == "" {
			t.Errorf("problem %q has no reason", p.Path)
		}
	}
	joined := strings.Join(paths, ",")
	if !strings.Contains(joined, "noise.globs[0]") || !strings.Contains(joined, "bogus") {
		t.Fatalf("paths %v (%v)", paths, err)
	}
}

// Scenario: bytes that are not an ExportTraceServiceRequest.
// Guarantees: malformed-batch with an offset, and the instance is kept.
func TestMalformedBatchHasOffsetAndKeepsInstance(t *testing.T) {
	e := load(t, "{}", Options{PoolSize: 1})
	_, err := e.Process(context.Background(), []byte{0x0a, 0x05, 0x01})
	var ge *GuestError
	if !errors.As(err, &ge) || ge.Kind != KindMalformedBatch || ge.Reason == "" || !ge.Permanent() {
		t.Fatalf("want malformed-batch, got %v", err)
	}
	if ge.Offset > 3 {
		t.Fatalf("offset %d", ge.Offset)
	}
	if e.Idle() != 1 {
		t.Fatalf("instance not kept after a typed error")
	}
}

// Scenario: a batch over limits.max_batch_bytes.
// Guarantees: batch-too-large with both numbers.
func TestBatchTooLarge(t *testing.T) {
	e := load(t, `{"limits":{"max_batch_bytes":16}}`, Options{PoolSize: 1})
	in := testbatch.Marshal(t, testbatch.Canary())
	_, err := e.Process(context.Background(), in)
	var ge *GuestError
	if !errors.As(err, &ge) || ge.Kind != KindBatchTooLarge || ge.Size != uint64(len(in)) || ge.Limit != 16 {
		t.Fatalf("want batch-too-large, got %v", err)
	}
}

func TestEffectiveConfig(t *testing.T) {
	e := load(t, `{"noise":{"extra_globs":["*/ping"]}}`, Options{PoolSize: 1})
	s, err := e.EffectiveConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s, "*/ping") || !strings.Contains(s, "max_batch_bytes") {
		t.Fatalf("effective config %s", s)
	}
}

// Scenario: files that are not tracescrub components.
// Guarantees: each is refused with a ContractError saying what was found.
func TestWrongComponentsAreRefused(t *testing.T) {
	_, comp := testbatch.Component(t)
	other := []byte(strings.ReplaceAll(string(comp), "tracescrub:processor/transform@0.1.0", "tracescrub:processor/transform@0.2.0"))
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"garbage", []byte("hello, world"), "not a WebAssembly file"},
		{"core module", []byte{0, 'a', 's', 'm', 1, 0, 0, 0}, "core wasm module"},
		{"empty component", []byte{0, 'a', 's', 'm', 0x0d, 0, 1, 0}, "exports nothing, this processor needs tracescrub:processor/transform@0.1.x (built for 0.1.0)"},
		{"other contract", other, "exports tracescrub:processor/transform@0.2.0, this processor needs tracescrub:processor/transform@0.1.x"},
		{"truncated", comp[:1000], "truncated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(context.Background(), "x.wasm", c.b, "{}", Options{CacheDir: sharedTestCache(t)})
			var ce *ContractError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `"x.wasm"`) {
				t.Fatalf("got %v, want a ContractError containing %q", err, c.want)
			}
		})
	}
}

// Scenario: many goroutines share one engine with a pool of 3.
// Guarantees: every call gets a right answer (the race detector checks that
// no instance is shared), and at most 3 instances exist.
func TestPoolConcurrency(t *testing.T) {
	e := load(t, "{}", Options{PoolSize: 3})
	in := testbatch.Marshal(t, testbatch.Canary())
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				out, err := e.Process(context.Background(), in)
				if err != nil {
					errs <- err
					return
				}
				if out.Stats.SpansOut != 1 || out.Stats.ValuesMasked != 1 {
					errs <- errors.New("wrong stats")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := e.Idle(); n < 1 || n > 3 {
		t.Fatalf("%d idle instances, want 1..3", n)
	}
}

// Scenario: a batch whose deadline passes during the call.
// Guarantees: a TrapError with Deadline set, the instance is discarded, and
// the next call works on a fresh instance.
func TestDeadlineDiscardsInstance(t *testing.T) {
	e := load(t, "{}", Options{PoolSize: 1})
	spans := make([]testbatch.Span, 20000)
	for i := range spans {
		spans[i] = testbatch.Span{Name: "GET /api/person", Attrs: map[string]string{"url.path": "/api/person/" + testbatch.Number, "db.statement": "select * from x where id = '" + testbatch.Number + "'"}, Parent: -1}
	}
	big := testbatch.Marshal(t, testbatch.Build(spans...))
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := e.Process(ctx, big)
	var te *TrapError
	if !errors.As(err, &te) || !te.Deadline {
		t.Fatalf("want a deadline TrapError, got %v", err)
	}
	if e.Idle() != 0 {
		t.Fatalf("the stopped instance went back to the pool")
	}
	out, err := e.Process(context.Background(), testbatch.Marshal(t, testbatch.Canary()))
	if err != nil || out.Stats.SpansOut != 1 {
		t.Fatalf("fresh instance: %v", err)
	}
}

// Scenario: seven batches, one refused as malformed, on a pool of one with
// MaxBatchesPerInstance 0, 1 and 3.
// Guarantees: an instance is discarded right after its last batch (none
// waits idle holding it) and the next batch gets a fresh one; a refused
// batch counts; 0 keeps the first instance for good. Every batch is still
// processed right.
func TestInstanceRenewedAfterMaxBatches(t *testing.T) {
	good := testbatch.Marshal(t, testbatch.Canary())
	for _, c := range []struct {
		max, instances int
		idle           int // after the seventh batch
	}{
		{0, 1, 1},
		{1, 7, 0},
		{3, 3, 1},
	} {
		t.Run(fmt.Sprint(c.max), func(t *testing.T) {
			e := load(t, "{}", Options{PoolSize: 1, MaxBatchesPerInstance: c.max})
			for i := 1; i <= 7; i++ {
				if i == 2 {
					_, err := e.Process(context.Background(), []byte{0x0a, 0x05, 0x01})
					var ge *GuestError
					if !errors.As(err, &ge) || ge.Kind != KindMalformedBatch {
						t.Fatalf("batch %d: want malformed-batch, got %v", i, err)
					}
				} else {
					out, err := e.Process(context.Background(), good)
					if err != nil || out.Stats.SpansOut != 1 || out.Stats.ValuesMasked != 1 {
						t.Fatalf("batch %d: %v", i, err)
					}
				}
				if c.max > 0 && i%c.max == 0 && e.Idle() != 0 {
					t.Fatalf("batch %d: the spent instance went back to the pool", i)
				}
			}
			if got := e.Instances(); got != c.instances {
				t.Fatalf("%d instances made, want %d", got, c.instances)
			}
			if got := e.Idle(); got != c.idle {
				t.Fatalf("%d idle, want %d", got, c.idle)
			}
		})
	}
}

// Scenario: sixteen goroutines share a pool of 3 that renews every 2
// batches.
// Guarantees: every batch is right, and renewal keeps to the pool size.
func TestInstanceRenewalUnderConcurrency(t *testing.T) {
	e := load(t, "{}", Options{PoolSize: 3, MaxBatchesPerInstance: 2})
	in := testbatch.Marshal(t, testbatch.Canary())
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				out, err := e.Process(context.Background(), in)
				if err != nil {
					errs <- err
					return
				}
				if out.Stats.SpansOut != 1 || out.Stats.ValuesMasked != 1 {
					errs <- errors.New("wrong stats")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// 64 batches at 2 per instance: 32 instances used, plus at most one made
	// by Load that ended up serving fewer.
	if n := e.Instances(); n < 32 || n > 33 {
		t.Fatalf("%d instances made, want 32 or 33", n)
	}
	if n := e.Idle(); n > 3 {
		t.Fatalf("%d idle instances, over the pool of 3", n)
	}
}

// Scenario: a memory cap too small for a batch.
// Guarantees: an error, never a panic or a passed-through batch; the next
// small batch works.
func TestMemoryCapRefusesBigBatch(t *testing.T) {
	e := load(t, "{}", Options{PoolSize: 1, MaxMemoryMiB: 2})
	spans := make([]testbatch.Span, 20000)
	for i := range spans {
		spans[i] = testbatch.Span{Name: "GET /api/person", Attrs: map[string]string{"url.path": "/api/person/" + testbatch.Number}, Parent: -1}
	}
	_, err := e.Process(context.Background(), testbatch.Marshal(t, testbatch.Build(spans...)))
	if err == nil {
		t.Fatal("a 2 MiB instance processed a large batch")
	}
	var te *TrapError
	var ge *GuestError
	if !(errors.As(err, &te) && !te.Deadline) && !(errors.As(err, &ge) && ge.Kind == KindOutOfMemory) {
		t.Fatalf("want a trap or out-of-memory, got %v", err)
	}
	if te != nil && !te.NearMemoryCap() {
		t.Fatalf("a trap at the memory cap is not reported as one: %v", err)
	}
	if _, err := e.Process(context.Background(), testbatch.Marshal(t, testbatch.Canary())); err != nil {
		t.Fatalf("after out of memory: %v", err)
	}
}

// Scenario: the same component loaded twice with one cache dir, as on a
// restart.
// Guarantees: the second load finds the compiled module on disk: no new
// cache entry is written and the existing one is not rewritten.
func TestSecondLoadHitsCompileCache(t *testing.T) {
	path, comp := testbatch.Component(t)
	dir := t.TempDir()
	e1, err := Load(context.Background(), path, comp, "{}", Options{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	e1.Close()
	before := cacheEntries(t, dir)
	if len(before) == 0 {
		t.Fatal("no cache entry after the first load")
	}
	// A new process has a new in-memory cache; forget ours.
	cacheMu.Lock()
	delete(caches, dir)
	cacheMu.Unlock()
	e2, err := Load(context.Background(), path, comp, "{}", Options{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	e2.Close()
	after := cacheEntries(t, dir)
	if len(after) != len(before) {
		t.Fatalf("cache entries %d -> %d: compiled again", len(before), len(after))
	}
	for name, mt := range before {
		if !after[name].Equal(mt) {
			t.Fatalf("cache entry %s rewritten: compiled again", name)
		}
	}
}

func cacheEntries(t *testing.T, dir string) map[string]time.Time {
	m := map[string]time.Time{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		m[p] = fi.ModTime()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Scenario: an engine is closed (swapped out by a reload) while batches run.
// Guarantees: batches in flight finish; later calls get ErrClosed, which
// tells the caller to retry on the current engine.
func TestCloseWhileInFlight(t *testing.T) {
	e := load(t, "{}", Options{PoolSize: 4})
	in := testbatch.Marshal(t, testbatch.Canary())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.Process(context.Background(), in); err != nil && !errors.Is(err, ErrClosed) {
				errs <- err
			}
		}()
	}
	e.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := e.Process(context.Background(), in); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if e.Idle() != 0 {
		t.Fatal("instances kept after close")
	}
}

// Scenario: a batch larger than the whole memory cap.
// Guarantees: out-of-memory without a call, and the instance is kept.
func TestBatchOverTheCapIsRefusedBeforeTheCall(t *testing.T) {
	e := load(t, "{}", Options{PoolSize: 1, MaxMemoryMiB: 1})
	_, err := e.Process(context.Background(), make([]byte, 1<<20))
	var ge *GuestError
	if !errors.As(err, &ge) || ge.Kind != KindOutOfMemory {
		t.Fatalf("want out-of-memory, got %v", err)
	}
	if e.Idle() != 1 {
		t.Fatal("instance discarded")
	}
}

// BenchmarkProcessRenewal measures what renewing an instance every N batches
// costs on 1000-span batches (a fresh instance and processor every N):
// go test -run XXX -bench ProcessRenewal ./internal/wasmhost
func BenchmarkProcessRenewal(b *testing.B) {
	spans := make([]testbatch.Span, 1000)
	for i := range spans {
		spans[i] = testbatch.Span{Name: "GET /api/person", Attrs: map[string]string{"url.path": "/api/person/" + testbatch.Number, "http.route": "/api/person/:fnr"}, Parent: -1}
		if i%10 == 0 {
			spans[i] = testbatch.Span{Name: "GET /isAlive", Attrs: map[string]string{"url.path": "/isAlive"}, Parent: -1}
		}
	}
	in := testbatch.Marshal(b, testbatch.Build(spans...))
	for _, max := range []int{0, 32, 8, 1} {
		b.Run(fmt.Sprint("max_batches_per_instance=", max), func(b *testing.B) {
			e := load(b, "{}", Options{PoolSize: 1, MaxBatchesPerInstance: max})
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, err := e.Process(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
