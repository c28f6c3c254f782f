//! The raw-HTTP transport for leasehold: the Lease API's JSON and its translation to and from
//! the core's types ([`wire`]). It depends on nothing from kube-rs or k8s-openapi, for the
//! smallest static images.
#![forbid(unsafe_code)]

pub mod wire;
