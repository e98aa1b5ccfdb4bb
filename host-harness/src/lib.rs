//! The `tracescrub` application: `serve` (the OTLP gateway), `replay`,
//! `audit`, `bench` and the file formats they read and write, built on the
//! component host library [`tracescrub_runtime`].
//!
//! A program that only needs to run the component in process depends on
//! `tracescrub-runtime`, which pulls in neither an async runtime nor an HTTP
//! or gRPC stack. Its API is re-exported here, so the application's modules
//! and tests name one crate.

// Unix only: the gateway stops and reloads on unix signals (SIGTERM, SIGHUP).
#[cfg(not(unix))]
compile_error!("tracescrub is unix-only (signals)");

pub mod audit;
pub mod bench;
pub mod body;
pub mod config_file;
pub mod formats;
pub mod replay;
pub mod residual;
pub mod serve;

pub use tracescrub_runtime::*;
