//! The host's error type.

use std::fmt;

/// Why loading, instantiating or calling the component failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostError {
    /// The wasmtime engine could not be created.
    Engine(wasmtime::Error),
    /// The bytes are not a component wasmtime can compile.
    Compile(wasmtime::Error),
    /// The component does not fit the `span-processor` world with nothing
    /// linked in: it imports something, or lacks an export.
    Link(wasmtime::Error),
    /// Instantiating the component failed (e.g. over the memory cap).
    Instantiate(wasmtime::Error),
    /// The component's own typed error: invalid config, malformed batch or
    /// batch too large. The instance is fine and can be used again.
    Processor(tracescrub_processor::Error),
    /// A call trapped (a bug in tracescrub, the memory cap, or the epoch
    /// deadline). The instance is now poisoned: drop it.
    Trap(wasmtime::Error),
    /// An earlier call on this instance trapped; it refuses further calls.
    Poisoned,
    /// A processor handle was used with an instance other than the one that
    /// created it.
    WrongInstance,
    /// The bytes are not a readable WebAssembly binary.
    Parse(wasmparser::BinaryReaderError),
    /// The component returned something the contract does not allow, e.g. a
    /// name this host does not know: it is newer than the host.
    Contract(String),
}

impl HostError {
    /// The wasmtime trap code, if a call or an instantiation trapped (e.g.
    /// `Trap::Interrupt` for a passed epoch deadline).
    pub fn trap_code(&self) -> Option<wasmtime::Trap> {
        match self {
            HostError::Trap(error) | HostError::Instantiate(error) => {
                error.downcast_ref::<wasmtime::Trap>().copied()
            }
            _ => None,
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Engine(_) => f.write_str("could not create the wasmtime engine"),
            HostError::Compile(_) => f.write_str("could not compile the component"),
            HostError::Link(_) => f.write_str("the component does not fit the span-processor world with no imports linked"),
            HostError::Instantiate(_) => f.write_str("could not instantiate the component"),
            // Transparent: the engine's message is the whole story.
            HostError::Processor(error) => error.fmt(f),
            HostError::Trap(_) => f.write_str("the component trapped; this instance is poisoned and must be dropped"),
            HostError::Poisoned => f.write_str("the component instance trapped earlier and refuses further calls; create a new one"),
            HostError::WrongInstance => f.write_str("the processor handle belongs to another component instance"),
            HostError::Parse(_) => f.write_str("could not read the WebAssembly binary"),
            HostError::Contract(what) => write!(f, "the component broke the contract: {what}; is it newer than this host?"),
        }
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HostError::Engine(e)
            | HostError::Compile(e)
            | HostError::Link(e)
            | HostError::Instantiate(e)
            | HostError::Trap(e) => Some(&**e),
            HostError::Parse(e) => Some(e),
            // `Processor` displays its error itself; pointing at it again as
            // the source would print it twice.
            HostError::Processor(_)
            | HostError::Poisoned
            | HostError::WrongInstance
            | HostError::Contract(_) => None,
        }
    }
}

impl From<tracescrub_processor::Error> for HostError {
    fn from(error: tracescrub_processor::Error) -> HostError {
        HostError::Processor(error)
    }
}

/// An error and its sources on one line, `: `-separated: for log lines,
/// replies and exit messages. Types here never point at a source they
/// already print, so nothing appears twice.
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
