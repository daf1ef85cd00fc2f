//! Durations as people write them in a topology file: `30s`, `5m`, `1h30m`, `7d`.

use std::fmt;
use std::str::FromStr;

use serde::de;

/// A span of time read from the topology file (RPO, RTO, hold-down, retention).
///
/// Written as one or more `<number><unit>` parts with units `s`, `m`, `h`, `d`
/// (`90s`, `1h30m`); a bare `0` is also accepted. Displays back in that form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason} (write e.g. `30s`, `5m`, `1h30m`, `7d`)")]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

impl Duration {
    /// Zero: nothing may be lost, or no time at all.
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    /// A duration of `seconds` seconds.
    pub const fn from_secs(seconds: u64) -> Self {
        Duration(std::time::Duration::from_secs(seconds))
    }

    /// A duration of `minutes` minutes.
    pub const fn from_mins(minutes: u64) -> Self {
        Duration(std::time::Duration::from_secs(minutes * 60))
    }

    /// A duration of `hours` hours.
    pub const fn from_hours(hours: u64) -> Self {
        Duration(std::time::Duration::from_secs(hours * 3600))
    }

    /// The standard library duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Whole seconds.
    pub const fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| DurationError {
            text: text.to_owned(),
            reason,
        };
        let trimmed = text.trim();
        if trimmed == "0" {
            return Ok(Duration::ZERO);
        }
        if trimmed.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut total: u64 = 0;
        let mut rest = trimmed;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(fail("expected a number"));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| fail("number too large"))?;
            rest = &rest[digits..];
            let unit = rest.chars().next().ok_or_else(|| fail("missing unit"))?;
            let seconds_per_unit = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(fail("unknown unit (use s, m, h or d)")),
            };
            rest = &rest[unit.len_utf8()..];
            total = number
                .checked_mul(seconds_per_unit)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(|| fail("too long"))?;
        }
        Ok(Duration::from_secs(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut seconds = self.0.as_secs();
        if seconds == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if seconds >= size {
                write!(f, "{}{unit}", seconds / size)?;
                seconds %= size;
            }
        }
        Ok(())
    }
}

impl<'de> de::Deserialize<'de> for Duration {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl de::Visitor<'_> for DurationVisitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `30s`, `5m`, `1h30m` or `7d`")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
                if n == 0 {
                    Ok(Duration::ZERO)
                } else {
                    Err(E::custom(format_args!(
                        "invalid duration `{n}`: a duration needs a unit, e.g. `{n}s` or `{n}m`"
                    )))
                }
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
                i64::try_from(n).map_or_else(
                    |_| Err(E::custom("invalid duration: too long")),
                    |n| self.visit_i64(n),
                )
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_units() {
        for (text, seconds, shown) in [
            ("30s", 30, "30s"),
            ("5m", 300, "5m"),
            ("1h30m", 5400, "1h30m"),
            ("7d", 604_800, "7d"),
            ("0", 0, "0s"),
            ("90s", 90, "1m30s"),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.as_secs(), seconds, "{text}");
            assert_eq!(d.to_string(), shown);
        }
    }

    #[test]
    fn rejects_malformed() {
        for text in [
            "",
            "5",
            "m",
            "5x",
            "5 m",
            "-5m",
            "99999999999999999999d",
            "5m3",
        ] {
            assert!(text.parse::<Duration>().is_err(), "{text}");
        }
    }
}
