//! What a component imports and exports, read from its binary without
//! compiling it.

use wasmparser::{Parser, Payload};

use crate::HostError;

/// The names of the component's top-level imports, in binary order.
/// The span-processor component has none.
pub fn component_imports(bytes: &[u8]) -> Result<Vec<String>, HostError> {
    top_level_names(bytes, Kind::Imports)
}

/// The names of the component's top-level exports, in binary order, e.g.
/// `tracescrub:processor/transform@0.1.0`.
pub fn component_exports(bytes: &[u8]) -> Result<Vec<String>, HostError> {
    top_level_names(bytes, Kind::Exports)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Imports,
    Exports,
}

fn top_level_names(bytes: &[u8], kind: Kind) -> Result<Vec<String>, HostError> {
    let mut names = Vec::new();
    // `parse_all` walks into nested modules and components too; each starts
    // with a `Version` payload and finishes with an `End`. Only depth 1 is
    // the component itself.
    let mut depth = 0_usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(HostError::Parse)? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 && kind == Kind::Imports => {
                for import in reader {
                    names.push(import.map_err(HostError::Parse)?.name.full_name().into_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 && kind == Kind::Exports => {
                for export in reader {
                    names.push(export.map_err(HostError::Parse)?.name.full_name().into_owned());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}
