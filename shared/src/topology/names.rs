//! Names that are checked once when read, so the rest of the code can trust
//! them: regions, projects, buckets, datasets, ids and object prefixes.

use std::fmt;

use serde::de;

macro_rules! checked_name {
    ($(#[$doc:meta])* $name:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `text` and wraps it; the error says which rule it breaks.
            pub fn new(text: impl Into<String>) -> Result<Self, String> {
                let text = text.into();
                $check(&text)?;
                Ok(Self(text))
            }

            /// The name as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl<'de> de::Deserialize<'de> for $name {
            fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct NameVisitor;

                impl de::Visitor<'_> for NameVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(stringify!($name))
                    }

                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$name, E> {
                        $name::new(text).map_err(E::custom)
                    }
                }

                // Checked inside the visitor, so the problem points at the value.
                deserializer.deserialize_string(NameVisitor)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

checked_name!(
    /// A Google Cloud region such as `us-central1` or `europe-west4`.
    RegionId,
    check_region
);
checked_name!(
    /// A Google Cloud project id: 6–30 lowercase letters, digits and hyphens.
    ProjectId,
    check_project
);
checked_name!(
    /// A Cloud Storage bucket name that follows the GCS naming rules.
    BucketName,
    check_bucket
);
checked_name!(
    /// A BigQuery dataset, `dataset` or `project.dataset`.
    DatasetId,
    check_dataset
);
checked_name!(
    /// The id of a workload or an asset: lowercase letters, digits, `-` and `_`,
    /// starting with a letter, at most 63 characters.
    Id,
    check_id
);
checked_name!(
    /// An object-name prefix inside a bucket (`runs/llm-7b/`); empty means the
    /// whole bucket. Matching is by whole path segments.
    ObjectPrefix,
    check_prefix
);

impl Default for ObjectPrefix {
    /// The empty prefix: the whole bucket.
    fn default() -> Self {
        Self(String::new())
    }
}

impl ObjectPrefix {
    /// Whether `object` lies under this prefix, by whole `/`-separated segments:
    /// `runs/a` holds `runs/a/step_1/x` but not `runs/ab/x`.
    pub fn contains(&self, object: &str) -> bool {
        let prefix = self.0.as_str();
        match object.strip_prefix(prefix) {
            Some(rest) => {
                prefix.is_empty()
                    || rest.is_empty()
                    || prefix.ends_with('/')
                    || rest.starts_with('/')
            }
            None => false,
        }
    }

    /// Whether one of the two prefixes holds the other (they would share objects).
    pub fn overlaps(&self, other: &ObjectPrefix) -> bool {
        self.contains(&other.0) || other.contains(&self.0)
    }
}

fn check_region(text: &str) -> Result<(), String> {
    // <area>-<direction><digits>, e.g. us-central1, northamerica-northeast2.
    let valid = text.split_once('-').is_some_and(|(area, rest)| {
        let letters = rest.trim_end_matches(|c: char| c.is_ascii_digit());
        !area.is_empty()
            && area.chars().all(|c| c.is_ascii_lowercase())
            && !letters.is_empty()
            && letters.len() < rest.len()
            && letters.chars().all(|c| c.is_ascii_lowercase())
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{text}` is not a Google Cloud region (like `us-central1` or `europe-west4`)"
        ))
    }
}

fn check_project(text: &str) -> Result<(), String> {
    let valid = (6..=30).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && !text.ends_with('-')
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{text}` is not a project id: 6 to 30 lowercase letters, digits or hyphens, \
             starting with a letter and not ending with a hyphen"
        ))
    }
}

/// The Cloud Storage bucket naming rules.
fn check_bucket(text: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("invalid bucket name `{text}`: {why}"));
    let allowed =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.';
    let max = if text.contains('.') { 222 } else { 63 };
    if text.len() < 3 || text.len() > max {
        return fail(&format!("must be 3 to {max} characters long"));
    }
    if !text.chars().all(allowed) {
        return fail("only lowercase letters, digits, `-`, `_` and `.` are allowed");
    }
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !text.starts_with(alphanumeric) || !text.ends_with(alphanumeric) {
        return fail("must start and end with a letter or a digit");
    }
    if text
        .split('.')
        .any(|part| part.is_empty() || part.len() > 63)
    {
        return fail("each dot-separated part must be 1 to 63 characters long");
    }
    if text.starts_with("goog") {
        return fail("must not start with `goog`");
    }
    if text.contains("google") || text.contains("g00gle") {
        return fail("must not contain `google`");
    }
    if text.parse::<std::net::Ipv4Addr>().is_ok() {
        return fail("must not be an IP address");
    }
    Ok(())
}

fn check_dataset(text: &str) -> Result<(), String> {
    let (project, dataset) = match text.split_once('.') {
        Some((project, dataset)) => (Some(project), dataset),
        None => (None, text),
    };
    if let Some(project) = project {
        check_project(project)?;
    }
    let valid = !dataset.is_empty()
        && dataset.len() <= 1024
        && dataset
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{text}` is not a BigQuery dataset: letters, digits and `_` (optionally `project.dataset`)"
        ))
    }
}

fn check_id(text: &str) -> Result<(), String> {
    let valid = (1..=63).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{text}` is not a valid id: lowercase letters, digits, `-` and `_`, \
             starting with a letter, at most 63 characters"
        ))
    }
}

fn check_prefix(text: &str) -> Result<(), String> {
    if text.starts_with('/') {
        Err(format!("prefix `{text}` must not start with `/`"))
    } else if text.contains("//") || text.chars().any(char::is_control) {
        Err(format!(
            "prefix `{text}` has an empty segment or a control character"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        for ok in ["us-central1", "europe-west4", "northamerica-northeast2"] {
            assert!(RegionId::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "us",
            "us-central",
            "US-central1",
            "us-central1a",
            "-central1",
            "us-1",
        ] {
            assert!(RegionId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn buckets() {
        for ok in ["acme-ckpt-usc1", "a_b", "acme.models.example.com", "123"] {
            assert!(BucketName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Acme",
            "-acme",
            "acme-",
            "goog-models",
            "my-google-bucket",
            "192.168.1.1",
            "a..b",
            "acme bucket",
        ] {
            assert!(BucketName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let p = ObjectPrefix::new("runs/llm").unwrap();
        assert!(p.contains("runs/llm/step_100/commit_success.txt"));
        assert!(!p.contains("runs/llm-7b/step_100/commit_success.txt"));
        let slash = ObjectPrefix::new("runs/llm/").unwrap();
        assert!(slash.contains("runs/llm/x"));
        assert!(ObjectPrefix::new("").unwrap().contains("anything"));
        assert!(p.overlaps(&ObjectPrefix::new("runs/llm/a").unwrap()));
        assert!(!p.overlaps(&ObjectPrefix::new("runs/llm-7b").unwrap()));
    }
}
