//! Which object names Cloud Storage accepts, checked the same way by every
//! store before it touches anything, so a name Cloud Storage would refuse
//! fails alike everywhere with [`StorageError::InvalidName`] naming the rule.
//!
//! Cloud Storage's rules (cloud.google.com/storage/docs/naming-objects): a
//! name is any sequence of Unicode characters of 1 to 1024 bytes once
//! encoded in UTF-8; it contains no carriage return and no line feed; it is
//! not `.` or `..`; it does not start with `.well-known/acme-challenge/`.
//! Everything else is legal, however awkward for a filesystem: `/` has no
//! meaning (so `a//b`, `../x`, `./x`, `a/../b` and a trailing `/` are plain
//! names), nor do other control characters (tab, NUL...). Cloud Storage
//! only advises against the XML-1.0-illegal controls `#x7F-#x84` and
//! `#x86-#x9F`, `#`, `[`, `]`, `*` and `?`; they are accepted.

use super::{ObjectRef, StorageError};

/// Longest object name, in bytes of UTF-8.
pub const MAX_OBJECT_NAME_BYTES: usize = 1024;

/// The prefix Cloud Storage keeps for itself (ACME HTTP challenges).
const ACME_CHALLENGE_PREFIX: &str = ".well-known/acme-challenge/";

/// The Cloud Storage rule `name` breaks, if it breaks one.
pub fn object_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("an object name has 1 to 1024 bytes; this one is empty")
    } else if name.len() > MAX_OBJECT_NAME_BYTES {
        Some("an object name has 1 to 1024 bytes of UTF-8; this one is longer")
    } else if name.contains(['\r', '\n']) {
        Some("an object name cannot contain a carriage return or a line feed")
    } else if name == "." || name == ".." {
        Some("an object name cannot be `.` or `..`")
    } else if name.starts_with(ACME_CHALLENGE_PREFIX) {
        Some("an object name cannot start with `.well-known/acme-challenge/`")
    } else {
        None
    }
}

/// `Ok` when `object`'s name is one Cloud Storage accepts, else
/// [`StorageError::InvalidName`] with the rule it breaks.
pub fn check_object_name(object: &ObjectRef) -> Result<(), StorageError> {
    match object_name_problem(&object.name) {
        None => Ok(()),
        Some(reason) => Err(StorageError::InvalidName {
            object: object.clone(),
            reason: reason.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cloud_storage_refuses_are_named_with_their_rule() {
        let too_long = "x".repeat(1025);
        for (name, rule) in [
            ("", "empty"),
            (too_long.as_str(), "1024"),
            ("a\nb", "line feed"),
            ("a\rb", "carriage return"),
            (".", "`..`"),
            ("..", "`..`"),
            (".well-known/acme-challenge/token", "acme-challenge"),
        ] {
            let reason = object_name_problem(name).unwrap_or_else(|| panic!("{name:?} accepted"));
            assert!(reason.contains(rule), "{name:?}: {reason}");
        }
    }

    #[test]
    fn names_awkward_for_a_filesystem_are_legal() {
        let longest = "x".repeat(1024);
        let multibyte = "é".repeat(512);
        for name in [
            "../x",
            "./x",
            "a//b",
            "a/../b",
            "a/",
            "/a",
            "..x",
            "a\tb",
            "a\0b",
            "\u{7f}\u{85}",
            ".well-known/acme-challenge",
            longest.as_str(),
            multibyte.as_str(),
        ] {
            assert_eq!(object_name_problem(name), None, "{name:?}");
        }
    }
}
