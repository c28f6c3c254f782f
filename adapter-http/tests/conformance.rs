//! The shared conformance suite (`leasehold_conformance`) over the HTTP transport.

mod connect;

leasehold_conformance::suite!(connect::connect);
