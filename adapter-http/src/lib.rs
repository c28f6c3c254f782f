//! The raw-HTTP transport for leasehold: reqwest over rustls and the Lease API's JSON
//! ([`wire`]), as a [`leasehold_runtime::Wire`] under the shared backbone
//! ([`client::HttpTransport`]). It depends on nothing from kube-rs or k8s-openapi, for the
//! smallest static images.
#![forbid(unsafe_code)]

pub mod client;
pub mod kubeconfig;
pub mod wire;

pub use client::{HttpConfig, HttpTransport, HttpWire, TransportError, connect};
