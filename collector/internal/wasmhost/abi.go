package wasmhost

import (
	"encoding/binary"
	"fmt"
)

// Canonical-ABI layouts of the records in wit/processor.wit, computed with the
// alignment and size rules of the component model's CanonicalABI.md: a record
// field sits at its own alignment, a list/string is (ptr i32, len i32) with
// align 4 and size 8, u64 has align 8, and a variant's payload starts at the
// largest payload alignment (8 here, from the u64s in `malformed`, `too-large`
// and `stats`). TestABILayoutsAgainstComponent checks them on the real thing.
const (
	resultPayload = 8 // result<T, error>: discriminant u8 @0, payload @8

	outputBatch = 0 // output.batch list<u8>
	outputStats = 8 // output.stats record (align 8)

	statsSpansIn            = 0
	statsSpansOut           = 8
	statsSpansDropped       = 16
	statsDroppedByRule      = 24
	statsDroppedDescendants = 32
	statsValuesMasked       = 40
	statsMaskedByDetector   = 48
	statsMaskedByField      = 56

	countSize    = 16 // count{name string @0, value u64 @8}
	problemSize  = 16 // config-problem{path string @0, reason string @8}
	errorPayload = 8  // error variant: discriminant u8 @0, payload @8
)

// Error cases of the `error` variant, in declaration order.
const (
	KindInvalidConfig  = "invalid-config"
	KindMalformedBatch = "malformed-batch"
	KindBatchTooLarge  = "batch-too-large"
	KindOutOfMemory    = "out-of-memory"
)

var errorKinds = []string{KindInvalidConfig, KindMalformedBatch, KindBatchTooLarge, KindOutOfMemory}

// Count is a count keyed by name: a glob, a detector or a field kind.
type Count struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

// Stats is what one call did to one batch (the WIT `stats` record).
type Stats struct {
	SpansIn            uint64  `json:"spans_in"`
	SpansOut           uint64  `json:"spans_out"`
	SpansDropped       uint64  `json:"spans_dropped"`
	DroppedByRule      []Count `json:"dropped_by_rule"`
	DroppedDescendants uint64  `json:"dropped_descendants"`
	ValuesMasked       uint64  `json:"values_masked"`
	MaskedByDetector   []Count `json:"masked_by_detector"`
	MaskedByField      []Count `json:"masked_by_field"`
}

// Output is a processed batch.
type Output struct {
	Batch []byte
	Stats Stats
}

// ConfigProblem is one problem the component found in a config document.
type ConfigProblem struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// GuestError is the component's own typed `error`: the input (config or
// batch) was refused. The instance that returned it stays usable.
type GuestError struct {
	Kind     string          // one of the Kind* constants
	Problems []ConfigProblem // invalid-config
	Offset   uint64          // malformed-batch
	Reason   string          // malformed-batch
	Size     uint64          // batch-too-large
	Limit    uint64          // batch-too-large
	What     string          // out-of-memory
}

func (e *GuestError) Error() string {
	switch e.Kind {
	case KindInvalidConfig:
		s := "invalid config"
		for i, p := range e.Problems {
			sep := "; "
			if i == 0 {
				sep = ": "
			}
			path := p.Path
			if path == "" {
				path = "(document)"
			}
			s += sep + path + ": " + p.Reason
		}
		return s
	case KindMalformedBatch:
		return fmt.Sprintf("malformed batch at byte %d: %s", e.Offset, e.Reason)
	case KindBatchTooLarge:
		return fmt.Sprintf("batch of %d bytes is over the limit of %d bytes (limits.max_batch_bytes)", e.Size, e.Limit)
	case KindOutOfMemory:
		return fmt.Sprintf("out of memory for %s: split the batch or raise max_memory_mib", e.What)
	}
	return e.Kind
}

// Permanent says whether sending the same input again can never succeed.
func (e *GuestError) Permanent() bool { return e.Kind != KindOutOfMemory }

// guestMem reads the guest's linear memory with bounds checks: the component
// is trusted not to lie, but a bug must become an error, not a host panic.
type guestMem struct {
	b   []byte
	err error
}

func (m *guestMem) fail(what string, off, n uint64) {
	if m.err == nil {
		m.err = fmt.Errorf("component returned an out-of-bounds %s (offset %d, length %d, memory %d bytes)", what, off, n, len(m.b))
	}
}

func (m *guestMem) slice(off, n uint64, what string) []byte {
	if off > uint64(len(m.b)) || n > uint64(len(m.b))-off {
		m.fail(what, off, n)
		return nil
	}
	return m.b[off : off+n]
}

func (m *guestMem) u8(off uint64) byte {
	s := m.slice(off, 1, "u8")
	if s == nil {
		return 0
	}
	return s[0]
}

func (m *guestMem) u32(off uint64) uint32 {
	s := m.slice(off, 4, "u32")
	if s == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(s)
}

func (m *guestMem) u64(off uint64) uint64 {
	s := m.slice(off, 8, "u64")
	if s == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(s)
}

// bytes copies a list<u8> (ptr, len at off) out of guest memory.
func (m *guestMem) bytes(off uint64) []byte {
	ptr, n := m.u32(off), m.u32(off+4)
	s := m.slice(uint64(ptr), uint64(n), "list")
	if s == nil {
		return nil
	}
	return append([]byte(nil), s...)
}

func (m *guestMem) str(off uint64) string {
	ptr, n := m.u32(off), m.u32(off+4)
	return string(m.slice(uint64(ptr), uint64(n), "string"))
}

// list reads a list of records of size elem and calls each with its offset.
func (m *guestMem) list(off uint64, elem uint64, each func(at uint64)) {
	ptr, n := uint64(m.u32(off)), uint64(m.u32(off+4))
	if m.slice(ptr, n*elem, "list") == nil {
		return
	}
	for i := uint64(0); i < n; i++ {
		each(ptr + i*elem)
	}
}

func (m *guestMem) counts(off uint64) []Count {
	out := []Count{}
	m.list(off, countSize, func(at uint64) {
		out = append(out, Count{Name: m.str(at), Value: m.u64(at + 8)})
	})
	return out
}

func (m *guestMem) stats(at uint64) Stats {
	return Stats{
		SpansIn:            m.u64(at + statsSpansIn),
		SpansOut:           m.u64(at + statsSpansOut),
		SpansDropped:       m.u64(at + statsSpansDropped),
		DroppedByRule:      m.counts(at + statsDroppedByRule),
		DroppedDescendants: m.u64(at + statsDroppedDescendants),
		ValuesMasked:       m.u64(at + statsValuesMasked),
		MaskedByDetector:   m.counts(at + statsMaskedByDetector),
		MaskedByField:      m.counts(at + statsMaskedByField),
	}
}

// guestError decodes the `error` variant at at.
func (m *guestMem) guestError(at uint64) *GuestError {
	disc := m.u8(at)
	p := at + errorPayload
	if int(disc) >= len(errorKinds) {
		m.fail(fmt.Sprintf("error discriminant %d", disc), at, 1)
		return nil
	}
	e := &GuestError{Kind: errorKinds[disc]}
	switch e.Kind {
	case KindInvalidConfig:
		e.Problems = []ConfigProblem{}
		m.list(p, problemSize, func(at uint64) {
			e.Problems = append(e.Problems, ConfigProblem{Path: m.str(at), Reason: m.str(at + 8)})
		})
	case KindMalformedBatch:
		e.Offset, e.Reason = m.u64(p), m.str(p+8)
	case KindBatchTooLarge:
		e.Size, e.Limit = m.u64(p), m.u64(p+8)
	case KindOutOfMemory:
		e.What = m.str(p)
	}
	return e
}
