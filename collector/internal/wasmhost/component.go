// Package wasmhost runs the tracescrub component on wazero.
//
// wazero has no component model, so this package reads the component binary
// itself, takes out its one core module, and calls that module's canonical-ABI
// exports directly. It owns the contract check (which interface and version the
// component exports), the canonical-ABI layouts, the handle table of the
// `processor` resource, and the pool of isolated instances.
package wasmhost

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// Interface is the WIT interface this host calls, without its version.
const Interface = "tracescrub:processor/transform"

// BuiltFor is the contract version this host was written against. Any 0.1.x
// component loads: 0.1.x only adds records fields and functions we do not call
// (see the stability note in wit/processor.wit).
const BuiltFor = "0.1.0"

// Component-model binary constants, from the component model's Binary.md.
var (
	wasmMagic        = []byte{0x00, 0x61, 0x73, 0x6d}
	componentVersion = []byte{0x0d, 0x00, 0x01, 0x00} // version 0xd, layer 1
	coreVersion      = []byte{0x01, 0x00, 0x00, 0x00}
)

const (
	secCustom       = 0
	secCoreModule   = 1
	secComponent    = 4
	secImport       = 10
	secExport       = 11
	componentExport = Interface + "@"
)

// ContractError says that a file is not a component this host can run: not a
// component at all, a component of another shape, or one that exports another
// contract. Loading it again will not help; build or pick the right file.
type ContractError struct {
	// Path is the file the component came from, when known.
	Path string
	// Reason says what was found and what was expected.
	Reason string
}

func (e *ContractError) Error() string {
	where := "component"
	if e.Path != "" {
		where = fmt.Sprintf("component %q", e.Path)
	}
	return fmt.Sprintf("%s: %s", where, e.Reason)
}

// parsed is what this host needs from a component binary.
type parsed struct {
	core    []byte // the one core module
	version string // the exported interface's version, e.g. "0.1.0"
}

// parseComponent checks the component's outer shape and takes out its core
// module. It never trusts a length: every read is bounds-checked.
func parseComponent(b []byte) (*parsed, error) {
	if len(b) < 8 || !bytes.Equal(b[:4], wasmMagic) {
		return nil, &ContractError{Reason: "not a WebAssembly file (no \\0asm magic); write the file that `tracescrub inspect --save FILE` writes"}
	}
	if bytes.Equal(b[4:8], coreVersion) {
		return nil, &ContractError{Reason: "is a core wasm module, not a component; write the file that `tracescrub inspect --save FILE` writes"}
	}
	if !bytes.Equal(b[4:8], componentVersion) {
		return nil, &ContractError{Reason: fmt.Sprintf("unknown wasm version/layer % x, want a component (0d 00 01 00)", b[4:8])}
	}
	r := &reader{b: b, off: 8}
	var cores [][]byte
	var exports []string
	for !r.done() {
		id, body, err := r.section()
		if err != nil {
			return nil, err
		}
		switch id {
		case secCoreModule:
			cores = append(cores, body)
		case secComponent:
			// wit-component wraps an exported interface's types in a nested
			// component of types only; code there would be code we never run.
			n, err := nestedCoreModules(body)
			if err != nil {
				return nil, err
			}
			if n > 0 {
				return nil, &ContractError{Reason: "holds a nested component with core modules; this host runs one core module and no nested code"}
			}
		case secImport:
			names, err := importNames(body)
			if err != nil {
				return nil, err
			}
			if len(names) > 0 {
				return nil, &ContractError{Reason: fmt.Sprintf("imports %s; a tracescrub component imports nothing", strings.Join(names, ", "))}
			}
		case secExport:
			names, err := exportNames(body)
			if err != nil {
				return nil, err
			}
			exports = append(exports, names...)
		}
	}
	var version string
	for _, name := range exports {
		if v, ok := strings.CutPrefix(name, componentExport); ok {
			version = v
		}
	}
	if version == "" || !strings.HasPrefix(version, "0.1.") {
		found := "nothing"
		if len(exports) > 0 {
			found = strings.Join(exports, ", ")
		}
		return nil, &ContractError{Reason: fmt.Sprintf("exports %s, this processor needs %s@0.1.x (built for %s)", found, Interface, BuiltFor)}
	}
	// Besides the module with the code, wit-component adds two small glue
	// modules (a shim and a fixup) that route the resource destructor
	// through a table, because the code module both imports resource-new
	// and exports the destructor. This host provides resource-new itself and
	// calls the destructor export directly, so it runs only the code module:
	// the one core module that exports cabi_realloc.
	var code [][]byte
	for _, c := range cores {
		names, err := coreExportNames(c)
		if err != nil {
			return nil, err
		}
		if slices.Contains(names, "cabi_realloc") {
			code = append(code, c)
		}
	}
	if len(code) != 1 {
		return nil, &ContractError{Reason: fmt.Sprintf("holds %d core modules of which %d export cabi_realloc; this host runs a component with exactly one code module", len(cores), len(code))}
	}
	return &parsed{core: code[0], version: version}, nil
}

// nestedCoreModules counts the core modules in a nested component, at any
// depth.
func nestedCoreModules(b []byte) (int, error) {
	if len(b) < 8 || !bytes.Equal(b[:4], wasmMagic) || !bytes.Equal(b[4:8], componentVersion) {
		return 0, errTruncated
	}
	r := &reader{b: b, off: 8}
	n := 0
	for !r.done() {
		id, body, err := r.section()
		if err != nil {
			return 0, err
		}
		switch id {
		case secCoreModule:
			n++
		case secComponent:
			m, err := nestedCoreModules(body)
			if err != nil {
				return 0, err
			}
			n += m
		}
	}
	return n, nil
}

// coreExportNames lists a core module's export names (core export section,
// id 7: vec(name exportdesc)).
func coreExportNames(b []byte) ([]string, error) {
	if len(b) < 8 || !bytes.Equal(b[:4], wasmMagic) || !bytes.Equal(b[4:8], coreVersion) {
		return nil, &ContractError{Reason: "holds a core module that is not core wasm version 1"}
	}
	r := &reader{b: b, off: 8}
	for !r.done() {
		id, body, err := r.section()
		if err != nil {
			return nil, err
		}
		if id != 7 {
			continue
		}
		s := &reader{b: body}
		n, err := s.u32()
		if err != nil {
			return nil, err
		}
		var names []string
		for i := uint32(0); i < n; i++ {
			name, err := s.name()
			if err != nil {
				return nil, err
			}
			if _, err := s.byte(); err != nil {
				return nil, err
			}
			if _, err := s.u32(); err != nil {
				return nil, err
			}
			names = append(names, name)
		}
		return names, nil
	}
	return nil, nil
}

func (r *reader) section() (byte, []byte, error) {
	id, err := r.byte()
	if err != nil {
		return 0, nil, err
	}
	size, err := r.u32()
	if err != nil {
		return 0, nil, err
	}
	body, err := r.take(int(size))
	if err != nil {
		return 0, nil, err
	}
	return id, body, nil
}

// importNames reads an import section: vec(importname' externdesc).
func importNames(body []byte) ([]string, error) {
	r := &reader{b: body}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	var names []string
	for i := uint32(0); i < n; i++ {
		name, err := r.externName()
		if err != nil {
			return nil, err
		}
		names = append(names, name)
		if err := r.externDesc(); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// exportNames reads an export section: vec(exportname' sortidx externdesc?).
func exportNames(body []byte) ([]string, error) {
	r := &reader{b: body}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	var names []string
	for i := uint32(0); i < n; i++ {
		name, err := r.externName()
		if err != nil {
			return nil, err
		}
		names = append(names, name)
		// sortidx: sort (0x00 core:sort | 0x01..0x05) then index.
		sort, err := r.byte()
		if err != nil {
			return nil, err
		}
		if sort == 0x00 {
			if _, err := r.byte(); err != nil {
				return nil, err
			}
		}
		if _, err := r.u32(); err != nil {
			return nil, err
		}
		opt, err := r.byte()
		if err != nil {
			return nil, err
		}
		if opt == 0x01 {
			if err := r.externDesc(); err != nil {
				return nil, err
			}
		}
	}
	return names, nil
}

type reader struct {
	b   []byte
	off int
}

var errTruncated = &ContractError{Reason: "truncated or malformed component binary"}

func (r *reader) done() bool { return r.off >= len(r.b) }

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) take(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, errTruncated
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s, nil
}

func (r *reader) u32() (uint32, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 || n > 5 || v > 0xffffffff {
		return 0, errTruncated
	}
	r.off += n
	return uint32(v), nil
}

// sleb skips a signed LEB128 (a valtype is an s33).
func (r *reader) sleb() error {
	for i := 0; i < 10; i++ {
		c, err := r.byte()
		if err != nil {
			return err
		}
		if c&0x80 == 0 {
			return nil
		}
	}
	return errTruncated
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	s, err := r.take(int(n))
	return string(s), err
}

// externName reads importname'/exportname': 0x00 name, or 0x01 name followed
// by a version suffix (newer encoders).
func (r *reader) externName() (string, error) {
	tag, err := r.byte()
	if err != nil {
		return "", err
	}
	name, err := r.name()
	if err != nil {
		return "", err
	}
	switch tag {
	case 0x00:
	case 0x01:
		if _, err := r.name(); err != nil {
			return "", err
		}
	default:
		return "", errTruncated
	}
	return name, nil
}

// externDesc skips an externdesc.
func (r *reader) externDesc() error {
	kind, err := r.byte()
	if err != nil {
		return err
	}
	switch kind {
	case 0x00: // core module: 0x11 typeidx
		if _, err := r.byte(); err != nil {
			return err
		}
		_, err = r.u32()
	case 0x01, 0x04, 0x05: // func, component, instance: typeidx
		_, err = r.u32()
	case 0x02: // value bound: 0x00 valueidx | 0x01 valtype
		var b byte
		if b, err = r.byte(); err != nil {
			return err
		}
		if b == 0x00 {
			_, err = r.u32()
		} else {
			err = r.sleb()
		}
	case 0x03: // type bound: 0x00 typeidx (eq) | 0x01 (sub resource)
		var b byte
		if b, err = r.byte(); err != nil {
			return err
		}
		if b == 0x00 {
			_, err = r.u32()
		}
	default:
		return errTruncated
	}
	return err
}
