//! Amounts of data as people write them in a topology file: `120GiB`,
//! `2TiB`, `500 GB`, or a plain number of bytes.

use std::fmt;

use serde::de;

/// An amount of data read from the topology file (bucket sizes, bytes
/// written per day, checkpoint sizes).
///
/// Written as a number and a unit: binary (`KiB`, `MiB`, `GiB`, `TiB`,
/// `PiB`) or decimal (`KB`, `MB`, `GB`, `TB`, `PB`), or as bare bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

impl ByteSize {
    /// `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        ByteSize(bytes)
    }

    /// `gib` gibibytes.
    pub const fn from_gib(gib: u64) -> Self {
        ByteSize(gib << 30)
    }

    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The amount in gibibytes, the unit Google Cloud prices data in.
    pub fn gib(self) -> f64 {
        self.0 as f64 / f64::from(1u32 << 30)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

/// Why an amount of data could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size `{text}`: {reason} (write e.g. `120GiB`, `2TiB` or `500GB`)")]
pub struct ByteSizeError {
    text: String,
    reason: String,
}

impl std::str::FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let fail = |reason: String| ByteSizeError {
            text: text.to_owned(),
            reason,
        };
        if !trimmed.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(fail("it does not start with a number".into()));
        }
        trimmed
            .parse::<bytesize::ByteSize>()
            .map(|size| ByteSize(size.as_u64()))
            .map_err(fail)
    }
}

impl<'de> de::Deserialize<'de> for ByteSize {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl de::Visitor<'_> for SizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount of data such as `120GiB`, `2TiB` or `500GB`")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n).map(ByteSize).map_err(|_| {
                    E::custom(format_args!(
                        "invalid size `{n}`: an amount of data is not negative"
                    ))
                })
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_binary_and_decimal_units_and_bare_bytes() {
        for (text, bytes) in [
            ("120GiB", 120 << 30),
            ("2 TiB", 2 << 40),
            ("1.5GiB", 3 << 29),
            ("500GB", 500_000_000_000),
            ("4096", 4096),
        ] {
            let size: ByteSize = text.parse().unwrap();
            assert_eq!(size.bytes(), bytes, "{text}");
        }
        assert_eq!(ByteSize::from_gib(120).to_string(), "120.0 GiB");
        assert!((ByteSize::from_bytes(3 << 29).gib() - 1.5).abs() < 1e-12);
    }

    #[test]
    fn rejects_what_is_not_an_amount() {
        for text in ["", "GiB", "-5GiB", "5 parsecs", "lots"] {
            let error = text.parse::<ByteSize>().unwrap_err().to_string();
            assert!(error.contains("120GiB"), "{text}: {error}");
        }
    }
}
