package tracescrubprocessor

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"example.invalid/tracescrub/collector/internal/wasmhost"
)

// Team files (schema version 2): the config's `teams.dir` holds one
// `<name>.yaml` (or `.yml`) per team. The component reads no file, so this
// host reads them and passes them in under `teams.files`, as `tracescrub
// serve` does: `{file, doc}` for a file that parses, `{file, error}` for one
// that does not (the component then leaves that team out and says why).

// teamsDir is the teams directory a config document names, as written and
// resolved against the config file's directory; "" when it names none.
func teamsDir(doc any, configPath string) (written, dir string) {
	m, _ := doc.(map[string]any)
	switch v := m["version"].(type) {
	case int:
		if v != 2 {
			return "", ""
		}
	case float64:
		if v != 2 {
			return "", ""
		}
	default:
		return "", ""
	}
	teams, _ := m["teams"].(map[string]any)
	d, _ := teams["dir"].(string)
	if d == "" {
		return "", ""
	}
	if filepath.IsAbs(d) {
		return strings.TrimRight(d, "/"), d
	}
	return strings.TrimRight(d, "/"), filepath.Join(filepath.Dir(configPath), d)
}

// teamFiles reads the team files of dir, by team name. A file that cannot be
// read or parsed, or a team written as both `.yaml` and `.yml`, is an entry
// with an error; an unreadable directory is the entry `.dir`. The digest
// covers every name and content read, so the watch sees any change; without
// parse, only the digest is made.
func teamFiles(written, dir string, parse bool) (map[string]any, string) {
	files := map[string]any{}
	h := sha256.New()
	entries, err := os.ReadDir(dir)
	if err != nil {
		files[".dir"] = map[string]any{"file": written, "error": fmt.Sprintf("cannot read the teams directory %s: %v", dir, errKind(err))}
		h.Write([]byte("\x00unreadable"))
		return files, hex.EncodeToString(h.Sum(nil))
	}
	var names []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, base := range names {
		name := strings.TrimSuffix(base, filepath.Ext(base))
		file := written + "/" + base
		if _, twice := files[name]; twice {
			files[name] = map[string]any{"file": file, "error": "two files for one team (.yaml and .yml); keep one"}
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, base))
		fmt.Fprintf(h, "%s\x00%d\x00", base, len(raw))
		h.Write(raw)
		if err != nil {
			files[name] = map[string]any{"file": file, "error": fmt.Sprintf("cannot read it: %v", errKind(err))}
			continue
		}
		if !parse {
			files[name] = nil // seen, for the doubled-team check
			continue
		}
		doc, err := parseConfig(file, raw)
		if err != nil {
			files[name] = map[string]any{"file": file, "error": strings.TrimPrefix(err.Error(), fmt.Sprintf("config_file %q: ", file))}
			continue
		}
		files[name] = map[string]any{"file": file, "doc": doc}
	}
	return files, hex.EncodeToString(h.Sum(nil))
}

// keepLastGood puts, for each team whose file has an error in files, that
// team's entry from last (the version serving now) in its place, so a
// broken edit keeps the team's last good rules. With the directory itself
// unreadable, every team of last is kept. Returns the teams whose new file
// failed.
func keepLastGood(files, last map[string]any) []string {
	if _, gone := files[".dir"]; gone {
		for name, entry := range last {
			if _, ok := files[name]; !ok {
				files[name] = entry
			}
		}
	}
	var failed []string
	for name, entry := range files {
		m, _ := entry.(map[string]any)
		if _, bad := m["error"]; !bad {
			continue
		}
		failed = append(failed, name)
		if good, ok := last[name]; ok {
			files[name] = good
		}
	}
	sort.Strings(failed)
	return failed
}

// strictTeams is the config document configJSON (which has team files)
// with teams.strict set, as JSON and parsed.
func strictTeams(configJSON string) (string, map[string]any, error) {
	var doc map[string]any
	if err := json.Unmarshal([]byte(configJSON), &doc); err != nil {
		return "", nil, fmt.Errorf("config: %w", err)
	}
	teams, ok := doc["teams"].(map[string]any)
	if !ok {
		return "", nil, errors.New("config: teams: expected a mapping")
	}
	teams["strict"] = true
	b, err := json.Marshal(doc)
	if err != nil {
		return "", nil, fmt.Errorf("config: %w", err)
	}
	return string(b), doc, nil
}

// teamsWithProblems names the teams the problems are about: a team file's
// problem's path starts with its file. nil when any problem is not a team
// file's (the platform's config has problems of its own).
func teamsWithProblems(files map[string]any, problems []wasmhost.ConfigProblem) []string {
	var failed []string
	for _, pr := range problems {
		team := ""
		for name, entry := range files {
			m, _ := entry.(map[string]any)
			if file, _ := m["file"].(string); file != "" && strings.HasPrefix(pr.Path, file+":") {
				team = name
				break
			}
		}
		if team == "" {
			return nil
		}
		if !slices.Contains(failed, team) {
			failed = append(failed, team)
		}
	}
	sort.Strings(failed)
	return failed
}

// errKind names what went wrong with a file without its path twice.
func errKind(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}
