//! Code the transports' examples share.

pub mod elector;
