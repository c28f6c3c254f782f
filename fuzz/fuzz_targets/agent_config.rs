//! The agent's config file and duration parsers: never a panic; every duration they accept
//! reads back the same after formatting (so a value shown to the user means what was parsed);
//! and a file and its rewrite with every dotted key expanded into nesting parse to the same
//! config. The first line is also tried as a lone duration, as a flag value would be.
#![no_main]

use leasehold::{config, duration};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::time::Duration;

fn round_trips(d: Duration) {
    assert_eq!(duration::parse(&duration::format(d)), Ok(d), "{d:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(first) = text.lines().next() {
        if let Ok(d) = duration::parse(first) {
            round_trips(d);
        }
    }
    let path = Path::new("fuzz.yaml");
    match config::parse(text, path) {
        Ok(file) => {
            let le = &file.providers.kubernetes_leaderelection;
            for d in [
                le.leader_leaseduration,
                le.leader_renewdeadline,
                le.leader_retryperiod,
            ]
            .into_iter()
            .flatten()
            {
                round_trips(d);
            }
            let nested = config::expanded(text, path).expect("a file that parses expands");
            let rewritten = serde_saphyr::to_string(&nested).expect("JSON writes as YAML");
            assert_eq!(
                config::parse(&rewritten, path).as_ref(),
                Ok(&file),
                "the nested rewrite means the same:\n{rewritten}"
            );
        }
        Err(e) => assert!(
            e.to_string().starts_with("config file fuzz.yaml: "),
            "an error names the file: {e}"
        ),
    }
});
