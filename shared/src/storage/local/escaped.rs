//! Where the local store keeps an object whose name a filesystem cannot
//! hold as a path.
//!
//! A name is kept as the plain path `ROOT/BUCKET/NAME` when every `/`-separated
//! segment of it is a file name: not empty (`a//b`, `a/`), not `.` or `..`,
//! at most 255 bytes, without NUL. Any other name Cloud Storage accepts is
//! escaped: kept under `ROOT/.lifeboat/escaped/BUCKET/KEY/`, where `KEY` is
//! the SHA-256 of the name in hex, in three files: `name` (the name itself,
//! byte for byte, written before the data so a listed object always has its
//! name), `data` and `sidecar`. So is a name that could be a path but
//! collides with another object's folder (`a` beside `a/b`), which Cloud
//! Storage allows and a filesystem does not. A name is looked for among the
//! escaped ones first: this store only ever writes a name in one place.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::SYSTEM_DIR;

/// Longest file name most filesystems accept, in bytes.
const MAX_SEGMENT_BYTES: usize = 255;

/// The file holding an escaped object's name.
pub(super) const NAME_FILE: &str = "name";
/// The file holding an escaped object's content.
pub(super) const DATA_FILE: &str = "data";
/// The file holding an escaped object's sidecar.
pub(super) const SIDECAR_FILE: &str = "sidecar";

/// Whether `name` (a name Cloud Storage accepts) can be the plain path of
/// an object: every segment a file name.
pub(super) fn fits_as_path(name: &str) -> bool {
    name.split('/').all(segment_fits)
}

/// Whether `segment` can be one file or folder name.
pub(super) fn segment_fits(segment: &str) -> bool {
    !matches!(segment, "" | "." | "..")
        && segment.len() <= MAX_SEGMENT_BYTES
        && !segment.contains('\0')
}

/// The folder holding every escaped object of `bucket`.
pub(super) fn bucket_folder(root: &Path, bucket: &str) -> PathBuf {
    root.join(SYSTEM_DIR).join("escaped").join(bucket)
}

/// The folder holding the escaped object `name` of `bucket`.
pub(super) fn object_folder(root: &Path, bucket: &str, name: &str) -> PathBuf {
    let digest = Sha256::digest(name.as_bytes());
    let key: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    bucket_folder(root, bucket).join(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_whose_segments_are_file_names_fit() {
        let long_segment = "s".repeat(256);
        for name in ["a", "a/b/c", "..a/b.", "with space/tab\there", "é/日本"] {
            assert!(fits_as_path(name), "{name:?}");
        }
        for name in [
            "../x",
            "./x",
            "a/..",
            "a//b",
            "a/",
            "/a",
            "a\0b",
            long_segment.as_str(),
        ] {
            assert!(!fits_as_path(name), "{name:?}");
        }
    }

    #[test]
    fn each_name_has_its_own_folder_within_its_bucket() {
        let root = Path::new("/data");
        let a = object_folder(root, "bucket", "../x");
        assert_eq!(a, object_folder(root, "bucket", "../x"));
        assert_ne!(a, object_folder(root, "bucket", "../y"));
        assert_eq!(a.parent(), Some(bucket_folder(root, "bucket").as_path()));
        assert_eq!(a.file_name().map(|n| n.len()), Some(64));
    }
}
