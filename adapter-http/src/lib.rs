//! The raw-HTTP transport for leasehold: reqwest over rustls, the Lease API's JSON ([`wire`]),
//! and a [`leasehold_runtime::Transport`] ([`client::HttpTransport`]). It depends on nothing from
//! kube-rs or k8s-openapi, for the smallest static images.
#![forbid(unsafe_code)]

pub mod client;
pub mod kubeconfig;
pub mod wire;

pub use client::{Failure, HttpConfig, HttpTransport, TransportError};
