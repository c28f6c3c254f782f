//! Durations as users write them in flags and config files: `15s`, `1m30s`, `500ms`, `1h`
//! (Go's and Elastic's notation), parsed by `humantime`.

use std::time::Duration;

/// The longest duration accepted: `i32::MAX` seconds (about 68 years), the Lease API's own limit
/// on `leaseDurationSeconds`. Every duration then fits the core's clock with room to add.
pub const MAX: Duration = Duration::from_secs(i32::MAX as u64);

/// Parses a duration such as `15s`, `1m30s` or `250ms`. A bare number is refused: its unit
/// would be a guess (seconds in one tool, milliseconds in another). So is one longer than
/// [`MAX`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "\"{text}\" has no unit: write it as \"{text}s\" (or ms, m, h)"
        ));
    }
    let d = humantime::parse_duration(text).map_err(|e| {
        if e.to_string().contains("too large") {
            too_large(text)
        } else {
            format!("\"{text}\" is not a duration ({e}): write e.g. 15s, 1m30s or 500ms")
        }
    })?;
    if d > MAX {
        return Err(too_large(text));
    }
    Ok(d)
}

fn too_large(text: &str) -> String {
    format!(
        "\"{text}\" is too large: a duration is at most {}s (about 68 years, the Lease API's \
         limit on leaseDurationSeconds)",
        MAX.as_secs()
    )
}

/// The core's duration as a std one, for tokio and the outputs.
pub fn to_std(d: leasehold_core::Duration) -> Duration {
    Duration::from_micros(d.as_micros())
}

/// A std duration (from a flag or the config file) as the core's. Those are at most [`MAX`], far
/// inside the core's range; a longer one is cut to it.
pub fn to_core(d: Duration) -> leasehold_core::Duration {
    leasehold_core::Duration::from_micros(d.min(MAX).as_micros() as u64)
}

/// Formats a duration the way [`parse`] reads it back.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_go_style_durations() {
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse(" 500ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn refuses_what_it_would_have_to_guess() {
        let e = parse("15").unwrap_err();
        assert!(e.contains("no unit") && e.contains("\"15s\""), "{e}");
        let e = parse("fifteen").unwrap_err();
        assert!(e.contains("not a duration") && e.contains("1m30s"), "{e}");
        assert!(parse("").is_err());
        assert!(parse("-5s").is_err());
    }

    #[test]
    fn refuses_what_the_lease_api_could_not_hold() {
        assert_eq!(parse("2147483647s"), Ok(MAX));
        for absurd in ["2147483648s", "10000000000h", "99999999999999999999h"] {
            let e = parse(absurd).unwrap_err();
            assert!(e.contains("too large") && e.contains(absurd), "{e}");
        }
    }

    #[test]
    fn converts_to_the_core_and_back_and_cuts_what_it_cannot_hold() {
        let d = Duration::from_millis(2500);
        assert_eq!(to_std(to_core(d)), d);
        assert_eq!(to_std(to_core(Duration::MAX)), MAX);
    }

    #[test]
    fn formats_what_it_parses() {
        for d in [Duration::from_secs(15), Duration::from_millis(2500)] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
