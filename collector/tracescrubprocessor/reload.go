package tracescrubprocessor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
)

// watch polls the component and config files' content every
// ReloadInterval. A collector SIGHUP rebuilds the whole pipeline, and the
// collector exits when that fails; this watch swaps in place after a canary
// and keeps the old version serving when the new one is broken.
func (p *tracescrubProcessor) watch() {
	defer p.done.Done()
	t := time.NewTicker(p.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.checkFiles()
		}
	}
}

// fileState is the hashes of the watched files' content.
type fileState struct{ component, config, key string }

// fileHashes hashes the watched files' content: the component, the config
// with its team files, the key file. Reading fails while a file is being
// replaced; then this tick is skipped.
func (p *tracescrubProcessor) fileHashes() (fileState, error) {
	comp, err := os.ReadFile(p.cfg.Component)
	if err != nil {
		return fileState{}, err
	}
	st := fileState{component: hash(comp)}
	if p.cfg.ConfigFile != "" {
		b, err := os.ReadFile(p.cfg.ConfigFile)
		if err != nil {
			return fileState{}, err
		}
		st.config, st.key = configFileHash(p.cfg.ConfigFile, b)
	}
	return st, nil
}

// checkFiles reloads when a watched file's content changed.
func (p *tracescrubProcessor) checkFiles() {
	cur := p.current.Load()
	if cur == nil {
		return
	}
	now, err := p.fileHashes()
	if err != nil {
		return
	}
	if now == (fileState{cur.componentHash, cur.configHash, cur.keyHash}) {
		p.lastTried, p.pending = fileState{}, fileState{}
		return
	}
	if now == p.lastTried {
		return
	}
	// Reload only once the content held still for one interval, so a file
	// caught halfway through a non-atomic write is not loaded (and counted
	// as a failure).
	if now != p.pending {
		p.pending = now
		return
	}
	p.lastTried = now
	p.reload()
}

// reload builds a new version and swaps it in, or keeps the old one.
func (p *tracescrubProcessor) reload() {
	ctx := context.Background()
	v, err := p.build(ctx)
	if err != nil {
		p.tel.reload(ctx, false)
		p.logger.Error("tracescrub reload failed; the previous version keeps serving",
			zap.String("component", p.cfg.Component), zap.String("config_file", p.cfg.ConfigFile), zap.Error(err))
		return
	}
	select {
	case <-p.stop:
		// Shut down meanwhile: do not resurrect.
		v.engine.Close()
		return
	default:
	}
	old := p.current.Swap(v)
	if old != nil {
		old.engine.Close()
	}
	p.tel.reload(ctx, true)
	p.logger.Info("tracescrub reloaded",
		zap.String("component_sha256", v.componentHash), zap.String("config_sha256", v.configHash))
}

var errCanary = errors.New("canary batch failed")

func canaryError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCanary, fmt.Sprintf(format, args...))
}
