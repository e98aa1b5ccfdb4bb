package tracescrubprocessor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.yaml.in/yaml/v3"

	"example.invalid/tracescrub/collector/internal/wasmhost"
)

// Config is the `tracescrub` processor's settings.
type Config struct {
	// Component is the tracescrub component file, as written by
	// `tracescrub inspect --save FILE`.
	Component string `mapstructure:"component"`
	// Config is tracescrub's config (the schema of its YAML config), inline.
	Config map[string]any `mapstructure:"config"`
	// ConfigFile is a YAML or JSON file in that schema. Exclusive with Config.
	ConfigFile string `mapstructure:"config_file"`
	// Timeout is the deadline for one batch in the component.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxMemoryMiB caps each instance's linear memory.
	MaxMemoryMiB uint32 `mapstructure:"max_memory_mib"`
	// ReloadInterval is how often the component and config files are
	// checked for changes; 0 turns the watch off.
	ReloadInterval time.Duration `mapstructure:"reload_interval"`
	// CacheDir holds compiled modules across restarts.
	CacheDir string `mapstructure:"cache_dir"`
	// PoolSize is the most batches processed at once (one instance each).
	PoolSize int `mapstructure:"pool_size"`
	// MaxBatchesPerInstance is how many batches an instance processes before
	// a fresh one takes its place, so no batch's personal data stays in guest
	// memory for long; 0 renews only after a trap.
	MaxBatchesPerInstance int `mapstructure:"max_batches_per_instance"`

	// Keep unkeyed literals out, so fields can be added.
	_ struct{}
}

var _ component.Config = (*Config)(nil)

// defaultMaxBatchesPerInstance is the Rust host's
// DEFAULT_MAX_BATCHES_PER_INSTANCE (host-harness/runtime/src/scrubber.rs),
// chosen there from `tracescrub bench`; a test keeps the two equal.
const defaultMaxBatchesPerInstance = 32

// maxMemoryMiB is wasm32's address space: 4 GiB.
const maxMemoryMiB = 4096

// Validate checks the settings, then loads the component and creates a
// processor with the config, so `otelcol validate` lists the component's own
// config problems with their key paths. Values are never echoed: a config
// may hold secrets.
func (c *Config) Validate() error {
	var errs []error
	if c.Component == "" {
		errs = append(errs, errors.New("component: required: write the path of the file that `tracescrub inspect --save FILE` writes"))
	}
	if len(c.Config) > 0 && c.ConfigFile != "" {
		errs = append(errs, errors.New("config and config_file are both set: keep one"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("timeout: must be above 0, e.g. 5s"))
	}
	if c.MaxMemoryMiB < 1 || c.MaxMemoryMiB > maxMemoryMiB {
		errs = append(errs, fmt.Errorf("max_memory_mib: must be 1..%d (wasm32 addresses 4 GiB)", maxMemoryMiB))
	}
	if c.ReloadInterval < 0 {
		errs = append(errs, errors.New("reload_interval: must be 0 (off) or above"))
	}
	if c.PoolSize < 1 {
		errs = append(errs, errors.New("pool_size: must be 1 or more"))
	}
	if c.MaxBatchesPerInstance < 0 {
		errs = append(errs, errors.New("max_batches_per_instance: must be 0 (renew only after a trap) or above"))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	src, err := c.readSource(nil)
	if err != nil {
		return err
	}
	// Team file problems are listed too, as `tracescrub config check` does
	// (a running processor leaves such a file out instead).
	js := src.configJSON
	if len(src.teams) > 0 {
		if js, _, err = strictTeams(js); err != nil {
			return err
		}
	}
	e, err := wasmhost.Load(context.Background(), c.Component, src.component, js, c.hostOptions(1))
	if err != nil {
		return c.explain(err)
	}
	e.Close()
	return nil
}

// explain turns an invalid-config error into one error per problem, each
// with the key path prefixed by where the config came from.
func (c *Config) explain(err error) error {
	var ge *wasmhost.GuestError
	if !errors.As(err, &ge) || ge.Kind != wasmhost.KindInvalidConfig {
		return err
	}
	where := "config"
	if c.ConfigFile != "" {
		where = fmt.Sprintf("config_file %q", c.ConfigFile)
	}
	errs := make([]error, 0, len(ge.Problems))
	for _, p := range ge.Problems {
		path := p.Path
		if path == "" {
			path = "(document)"
		}
		errs = append(errs, fmt.Errorf("%s: %s: %s", where, path, p.Reason))
	}
	return errors.Join(errs...)
}

func (c *Config) hostOptions(pool int) wasmhost.Options {
	dir := c.CacheDir
	if dir == "" {
		dir = wasmhost.DefaultCacheDir()
	}
	return wasmhost.Options{MaxMemoryMiB: c.MaxMemoryMiB, CacheDir: dir, PoolSize: pool, MaxBatchesPerInstance: c.MaxBatchesPerInstance}
}

// source is what one version is made of, with the hashes the watch compares.
type source struct {
	component     []byte
	configJSON    string
	componentHash string
	configHash    string
	keyHash       string
	// teams is the teams.files entries passed in (last good ones in place
	// of broken files); teamFailures the teams whose new file failed.
	teams        map[string]any
	teamFailures []string
}

func hash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// readSource reads the component and the config file (if any), with its
// team files, and turns the config into the JSON document the component's
// create takes. lastTeams are the team entries of the version serving now:
// a team whose file is broken keeps its entry there.
func (c *Config) readSource(lastTeams map[string]any) (*source, error) {
	comp, err := os.ReadFile(c.Component)
	if err != nil {
		return nil, fmt.Errorf("component: %w (write the path of the file that `tracescrub inspect --save FILE` writes)", err)
	}
	s := &source{component: comp, componentHash: hash(comp), configJSON: "{}"}
	switch {
	case c.ConfigFile != "":
		raw, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("config_file: %w", err)
		}
		doc, err := parsePlatformConfig(c.ConfigFile, raw)
		if err != nil {
			return nil, err
		}
		s.configHash = hash(raw)
		if written, dir := teamsDir(doc, c.ConfigFile); dir != "" {
			files, digest := teamFiles(written, dir, true)
			s.teamFailures = keepLastGood(files, lastTeams)
			s.teams = files
			doc.(map[string]any)["teams"].(map[string]any)["files"] = files
			s.configHash = hash([]byte(s.configHash + digest))
		}
		s.keyHash = keyFileHash(doc, filepath.Dir(c.ConfigFile))
		if err := resolveKey(doc, filepath.Dir(c.ConfigFile)); err != nil {
			return nil, fmt.Errorf("config_file %q: %w", c.ConfigFile, err)
		}
		b, err := json.Marshal(doc)
		if err != nil {
			return nil, fmt.Errorf("config_file %q: cannot be written as JSON: %w", c.ConfigFile, err)
		}
		s.configJSON = string(b)
	case len(c.Config) > 0:
		// A copy through JSON: the key goes into it, not into the settings.
		b, err := json.Marshal(c.Config)
		if err != nil {
			return nil, fmt.Errorf("config: cannot be written as JSON: %w", err)
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("config: cannot be written as JSON: %w", err)
		}
		if err := resolveKey(doc, ""); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if b, err = json.Marshal(doc); err != nil {
			return nil, fmt.Errorf("config: cannot be written as JSON: %w", err)
		}
		s.configJSON = string(b)
	}
	return s, nil
}

// configFileHash is the config and key hashes readSource gives the config
// file's content raw: the config's with the team files' names and contents
// folded in when it names a teams directory, so a team file's change is a
// config change; the key file's when it names one. A config that does not
// parse hashes as its bytes (the reload then says why).
func configFileHash(path string, raw []byte) (string, string) {
	doc, err := parsePlatformConfig(path, raw)
	if err != nil {
		return hash(raw), ""
	}
	h := hash(raw)
	if written, dir := teamsDir(doc, path); dir != "" {
		_, digest := teamFiles(written, dir, false)
		h = hash([]byte(h + digest))
	}
	return h, keyFileHash(doc, filepath.Dir(path))
}

// configFileJSON turns a YAML or JSON config file into the JSON document
// create takes (team files not attached).
func configFileJSON(path string, raw []byte) (string, error) {
	doc, err := parsePlatformConfig(path, raw)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("config_file %q: cannot be written as JSON: %w", path, err)
	}
	return string(b), nil
}

// parseConfig reads a YAML or JSON config (or team) file into a JSON-able
// document. An empty file is an empty document.
func parseConfig(path string, raw []byte) (any, error) {
	var doc any
	if strings.EqualFold(filepath.Ext(path), ".json") {
		if err := json.Unmarshal(raw, &doc); err != nil {
			return nil, fmt.Errorf("config_file %q: not valid JSON: %w", path, err)
		}
	} else {
		err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&doc)
		if errors.Is(err, io.EOF) {
			return map[string]any{}, nil
		}
		if err != nil {
			// yaml's messages give a line number and no value.
			return nil, fmt.Errorf("config_file %q: not valid YAML: %w", path, err)
		}
	}
	return jsonable(doc), nil
}

// parsePlatformConfig is parseConfig for the platform's config file: its
// `gateway:` section (the settings of `tracescrub serve`, which shares the
// file format) is taken out, as that host does, so one file serves both.
// A team file keeps any such key, and the component refuses it there.
func parsePlatformConfig(path string, raw []byte) (any, error) {
	doc, err := parseConfig(path, raw)
	if m, ok := doc.(map[string]any); ok {
		delete(m, "gateway")
	}
	return doc, err
}

// jsonable turns YAML maps with non-string keys into JSON objects.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = jsonable(x)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = jsonable(x)
		}
		return m
	case []any:
		for i, x := range t {
			t[i] = jsonable(x)
		}
		return t
	}
	return v
}

func defaultPoolSize() int { return runtime.GOMAXPROCS(0) }
