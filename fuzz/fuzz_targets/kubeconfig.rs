//! Kubeconfig parsing and resolution never panics; relative paths resolve under a directory
//! that does not exist, so no real file is read.
#![no_main]

use leasehold_adapter_http::kubeconfig::from_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = from_text(
        text,
        std::path::Path::new("/nonexistent/leasehold-fuzz/config"),
        None,
    );
});
