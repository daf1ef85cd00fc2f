//! Cloud Storage's own rules for object names (cloud.google.com/storage/
//! docs/naming-objects): 1 to 1,024 bytes of UTF-8, no carriage return or
//! line feed, not `.` or `..`, and not under `.well-known/acme-challenge/`.
//! Every other name, `../x`, `a//b`, a NUL or a leading slash included, is
//! one Cloud Storage holds, so every store must hold it too. A name these
//! rules refuse can never exist in Cloud Storage: an event naming one is
//! not retried but kept as a poison record.

/// The longest object name Cloud Storage accepts, in UTF-8 bytes.
pub const MAX_OBJECT_NAME_BYTES: usize = 1024;

/// The prefix Cloud Storage reserves for ACME HTTP challenges.
const ACME_CHALLENGE_PREFIX: &str = ".well-known/acme-challenge/";

/// Why Cloud Storage refuses `name` as an object name, if it does.
pub fn cloud_storage_refuses(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > MAX_OBJECT_NAME_BYTES {
        Some(format!(
            "is {} bytes long, over Cloud Storage's {MAX_OBJECT_NAME_BYTES}",
            name.len()
        ))
    } else if name.contains(['\r', '\n']) {
        Some("contains a carriage return or line feed".to_string())
    } else if name == "." || name == ".." {
        Some(format!("is {name:?}"))
    } else if name.starts_with(ACME_CHALLENGE_PREFIX) {
        Some(format!("starts with {ACME_CHALLENGE_PREFIX}"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_storage_refuses_only_what_its_rules_name() {
        let longest = "é".repeat(MAX_OBJECT_NAME_BYTES / 2);
        for legal in [
            "../x",
            "a//b",
            "./x",
            "/leading",
            "nul\0byte",
            "...",
            ".well-known/other",
            longest.as_str(),
        ] {
            assert_eq!(cloud_storage_refuses(legal), None, "{legal:?}");
        }
        let too_long = format!("{longest}a");
        for (refused, why) in [
            ("", "is empty"),
            (too_long.as_str(), "1025 bytes"),
            ("a\nb", "line feed"),
            ("a\rb", "carriage return"),
            (".", "\".\""),
            ("..", "\"..\""),
            (".well-known/acme-challenge/token", "acme-challenge"),
        ] {
            let problem = cloud_storage_refuses(refused).unwrap_or_else(|| panic!("{refused:?}"));
            assert!(problem.contains(why), "{refused:?}: {problem}");
        }
    }
}
