//! The `leasehold` agent: wires one leasehold-core machine to one transport and shows the user
//! what the lease decided: logs, a status file, HTTP endpoints, Prometheus metrics and a child
//! process run only while this agent leads.
//!
//! The binary (`src/main.rs`) is a thin shell over [`run`]; the library exists so the fuzz
//! targets and tests reach the parsers of outside input ([`config`], [`duration`]).
//!
//! The same binary is also the fence around a child command (`leasehold __fence`, see
//! `fence`), whose one `unsafe` block (a hook between `fork` and `exec`) lives in `fence/sys.rs`.
#![deny(unsafe_code)]

#[cfg(not(any(feature = "kube", feature = "http")))]
compile_error!("leasehold needs a transport: build with the `kube` or `http` feature (or both)");

pub mod cli;
pub mod config;
pub mod duration;
pub mod error;

mod atomic_write;
mod child;
mod cluster;
mod commands;
mod dns_label;
mod fence;
mod metrics;
mod rbac;
mod server;
mod shutdown;
mod status;
mod transport;

pub use commands::run;
pub use error::{AgentError, ExitCode};
