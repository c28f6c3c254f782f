//! The DNS label (RFC 1123) that Kubernetes requires of namespaces and that a component name
//! must be to serve as a label value and a lease name's prefix.

/// Whether `text` is a DNS label: 1 to 63 lower-case letters, digits and '-', starting and
/// ending with a letter or digit.
pub fn is_dns_label(text: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            bytes.len() <= 63
                && alnum(first)
                && alnum(last)
                && bytes.iter().all(|&b| alnum(b) || b == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short_lower_case_and_start_and_end_with_a_letter_or_digit() {
        for ok in ["a", "kube-system", "0", "a-0-b", &"x".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "ü", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
