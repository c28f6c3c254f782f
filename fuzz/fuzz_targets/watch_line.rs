//! The HTTP transport's watch-stream line decoder never panics.
#![no_main]

use leasehold_adapter_http::wire::decode_watch_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_watch_line(data);
});
