// Command tracescrub-conformance runs the tracescrub component through the
// collector processor's wazero host, for the three-host conformance test
// (the same runner exists for wasmtime and for Node/jco; their outputs are
// compared byte for byte).
//
//	tracescrub-conformance run   --component FILE --config CONFIG_JSON_FILE IN_DIR OUT_DIR
//	tracescrub-conformance bench --component FILE --config CONFIG_JSON_FILE [--rounds N] IN_DIR
//
// run: creates one processor with the JSON config (passed verbatim), then
// processes every IN_DIR/*.binpb in name order, writing each output to
// OUT_DIR/<same name> and everything else to OUT_DIR/results.json.
//
// bench: one warm-up round, then N rounds over the same batches on one
// instance; prints `bench: spans_per_s=N mb_s=X batches=N rounds=N`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"example.invalid/tracescrub/collector/internal/wasmhost"
)

const usage = `usage:
  tracescrub-conformance run   --component FILE --config CONFIG_JSON_FILE IN_DIR OUT_DIR
  tracescrub-conformance bench --component FILE --config CONFIG_JSON_FILE [--rounds N] IN_DIR
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "tracescrub-conformance: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("no command\n" + usage)
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	component := fs.String("component", "", "the component file (`tracescrub inspect --save FILE` writes it)")
	config := fs.String("config", "", "a JSON config document, passed verbatim to create")
	rounds := fs.Int("rounds", 20, "bench: measured rounds after one warm-up round")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *component == "" || *config == "" {
		return errors.New("--component and --config are required\n" + usage)
	}
	switch args[0] {
	case "run":
		if fs.NArg() != 2 {
			return errors.New("run takes IN_DIR OUT_DIR\n" + usage)
		}
		return runCmd(*component, *config, fs.Arg(0), fs.Arg(1))
	case "bench":
		if fs.NArg() != 1 || *rounds < 1 {
			return errors.New("bench takes IN_DIR and --rounds of 1 or more\n" + usage)
		}
		return benchCmd(*component, *config, fs.Arg(0), *rounds, stdout)
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

// errJSON is the shared, host-neutral form of the component's `error`.
func errJSON(e *wasmhost.GuestError) map[string]any {
	m := map[string]any{"kind": e.Kind}
	switch e.Kind {
	case wasmhost.KindInvalidConfig:
		m["problems"] = e.Problems
	case wasmhost.KindMalformedBatch:
		m["offset"], m["reason"] = e.Offset, e.Reason
	case wasmhost.KindBatchTooLarge:
		m["size"], m["limit"] = e.Size, e.Limit
	case wasmhost.KindOutOfMemory:
		m["what"] = e.What
	}
	return m
}

func load(component, config string, opts wasmhost.Options) (*wasmhost.Engine, error) {
	comp, err := os.ReadFile(component)
	if err != nil {
		return nil, fmt.Errorf("--component: %w", err)
	}
	cfg, err := os.ReadFile(config)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	if opts.CacheDir == "" {
		opts.CacheDir = wasmhost.DefaultCacheDir()
	}
	return wasmhost.Load(context.Background(), component, comp, string(cfg), opts)
}

func batches(dir string) ([]string, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.binpb"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

func runCmd(component, config, inDir, outDir string) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	results := map[string]any{}
	e, err := load(component, config, wasmhost.Options{PoolSize: 1})
	var ge *wasmhost.GuestError
	switch {
	case errors.As(err, &ge):
		results["create"] = map[string]any{"error": errJSON(ge)}
		return writeResults(outDir, results)
	case err != nil:
		return err
	}
	defer e.Close()
	results["create"] = map[string]any{"ok": true}
	names, err := batches(inDir)
	if err != nil {
		return err
	}
	out := map[string]any{}
	for _, path := range names {
		name := filepath.Base(path)
		in, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		res, err := e.Process(context.Background(), in)
		if errors.As(err, &ge) {
			out[name] = map[string]any{"error": errJSON(ge)}
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(outDir, name), res.Batch, 0o644); err != nil {
			return err
		}
		out[name] = map[string]any{"stats": res.Stats}
	}
	results["batches"] = out
	return writeResults(outDir, results)
}

func writeResults(outDir string, results map[string]any) error {
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(outDir, "results.json"), append(b, '\n'), 0o644)
}

func benchCmd(component, config, inDir string, rounds int, stdout io.Writer) error {
	e, err := load(component, config, wasmhost.Options{PoolSize: 1})
	if err != nil {
		return err
	}
	defer e.Close()
	names, err := batches(inDir)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("no *.binpb in %s", inDir)
	}
	var inputs [][]byte
	for _, path := range names {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		inputs = append(inputs, b)
	}
	var spans, bytes uint64
	var elapsed time.Duration
	for r := 0; r <= rounds; r++ {
		for i, in := range inputs {
			t0 := time.Now()
			res, err := e.Process(context.Background(), in)
			d := time.Since(t0)
			if err != nil {
				return fmt.Errorf("%s: %w", filepath.Base(names[i]), err)
			}
			if r == 0 {
				continue // warm-up
			}
			elapsed += d
			spans += res.Stats.SpansIn
			bytes += uint64(len(in))
		}
	}
	secs := elapsed.Seconds()
	fmt.Fprintf(stdout, "bench: spans_per_s=%.0f mb_s=%.2f batches=%d rounds=%d\n",
		float64(spans)/secs, float64(bytes)/1e6/secs, len(inputs), rounds)
	return nil
}
