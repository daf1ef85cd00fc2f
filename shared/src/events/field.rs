//! Reading typed fields out of a JSON document so that every error names the
//! field's full path (`data.generation`, `message.attributes.ce-id`): the
//! sender of a bad payload must learn from the 400 alone what to fix.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::EventError;

/// The longest excerpt of an offending value quoted back in an error.
const EXCERPT_CHARS: usize = 60;

/// 2^53: integers a JSON number written with a fraction or an exponent
/// (`1e3`) holds exactly; larger ones may have lost digits.
const EXACT_IN_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// A JSON object and the path it was found at.
#[derive(Debug, Clone)]
pub(crate) struct JsonObject<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> JsonObject<'a> {
    /// Views `value`, found at `path`, as an object.
    pub(crate) fn new(path: impl Into<String>, value: &'a Value) -> Result<Self, EventError> {
        let path = path.into();
        match value {
            Value::Object(map) => Ok(Self { path, map }),
            other => Err(EventError::invalid(
                path,
                format!("expected a JSON object, got {}", excerpt(other)),
            )),
        }
    }

    /// The path of a field of this object.
    pub(crate) fn path_of(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// The field's value; `null` counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// Whether the field is present and not `null`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The value of the first of `names` that is present, with its name.
    fn first_of(&self, names: &[&'static str]) -> Option<(&'static str, &'a Value)> {
        names
            .iter()
            .find_map(|name| self.get(name).map(|value| (*name, value)))
    }

    /// A required field.
    pub(crate) fn required(&self, name: &str) -> Result<&'a Value, EventError> {
        self.get(name)
            .ok_or_else(|| EventError::invalid(self.path_of(name), "missing"))
    }

    /// A required string field.
    pub(crate) fn string(&self, name: &str) -> Result<String, EventError> {
        let value = self.required(name)?;
        as_string(&self.path_of(name), value)
    }

    /// A required non-empty string field.
    pub(crate) fn non_empty_string(&self, name: &str) -> Result<String, EventError> {
        let value = self.string(name)?;
        if value.is_empty() {
            return Err(EventError::invalid(self.path_of(name), "must not be empty"));
        }
        Ok(value)
    }

    /// An optional string field.
    pub(crate) fn opt_string(&self, name: &str) -> Result<Option<String>, EventError> {
        self.get(name)
            .map(|value| as_string(&self.path_of(name), value))
            .transpose()
    }

    /// The error for a field missing under every one of its spellings.
    fn missing_any(&self, names: &[&'static str]) -> EventError {
        let name = names.first().copied().unwrap_or_default();
        EventError::invalid(self.path_of(name), "missing")
    }

    /// A required string field that may be spelled in one of several ways
    /// (Pub/Sub push sends both `messageId` and `message_id`).
    pub(crate) fn string_any(&self, names: &[&'static str]) -> Result<String, EventError> {
        match self.first_of(names) {
            Some((name, value)) => as_string(&self.path_of(name), value),
            None => Err(self.missing_any(names)),
        }
    }

    /// A required RFC 3339 timestamp that may be spelled in several ways.
    pub(crate) fn timestamp_any(
        &self,
        names: &[&'static str],
    ) -> Result<DateTime<Utc>, EventError> {
        match self.first_of(names) {
            Some((name, value)) => {
                let path = self.path_of(name);
                parse_timestamp(&path, &as_string(&path, value)?)
            }
            None => Err(self.missing_any(names)),
        }
    }

    /// An optional RFC 3339 timestamp.
    pub(crate) fn opt_timestamp(&self, name: &str) -> Result<Option<DateTime<Utc>>, EventError> {
        let path = self.path_of(name);
        self.opt_string(name)?
            .map(|text| parse_timestamp(&path, &text))
            .transpose()
    }

    /// A required object field.
    pub(crate) fn object(&self, name: &str) -> Result<JsonObject<'a>, EventError> {
        JsonObject::new(self.path_of(name), self.required(name)?)
    }

    /// An optional object field.
    pub(crate) fn opt_object(&self, name: &str) -> Result<Option<JsonObject<'a>>, EventError> {
        self.get(name)
            .map(|value| JsonObject::new(self.path_of(name), value))
            .transpose()
    }

    /// A required 64-bit signed integer as the proto3 JSON mapping renders
    /// it: a string (`"generation": "1700000000000000"`, as the JSON API
    /// sends) or a JSON number (as some of Google's samples have it).
    pub(crate) fn int64(&self, name: &str) -> Result<i64, EventError> {
        let value = self.required(name)?;
        proto3_integer(&self.path_of(name), value)
    }

    /// An optional 64-bit signed integer, a string or a number.
    pub(crate) fn opt_int64(&self, name: &str) -> Result<Option<i64>, EventError> {
        self.get(name)
            .map(|value| proto3_integer(&self.path_of(name), value))
            .transpose()
    }

    /// A required 64-bit unsigned integer, a string (`"size": "1024"`) or a
    /// number (`"size": 1024`).
    pub(crate) fn uint64(&self, name: &str) -> Result<u64, EventError> {
        let value = self.required(name)?;
        proto3_integer(&self.path_of(name), value)
    }

    /// A required JSON integer.
    pub(crate) fn integer(&self, name: &str) -> Result<i64, EventError> {
        let path = self.path_of(name);
        let value = self.required(name)?;
        value.as_i64().ok_or_else(|| {
            EventError::invalid(path, format!("expected an integer, got {}", excerpt(value)))
        })
    }

    /// An optional JSON integer.
    pub(crate) fn opt_integer(&self, name: &str) -> Result<Option<i64>, EventError> {
        if self.has(name) {
            self.integer(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An optional boolean; absent is `false`.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, EventError> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(other) => Err(EventError::invalid(
                self.path_of(name),
                format!("expected true or false, got {}", excerpt(other)),
            )),
        }
    }

    /// An optional value that Monitoring renders as a string or a number
    /// (`threshold_value`), as text.
    pub(crate) fn opt_scalar_text(&self, name: &str) -> Result<Option<String>, EventError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(other) => Err(EventError::invalid(
                self.path_of(name),
                format!("expected a string or a number, got {}", excerpt(other)),
            )),
        }
    }

    /// An optional map of string labels; absent is empty.
    pub(crate) fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, EventError> {
        let Some(value) = self.get(name) else {
            return Ok(BTreeMap::new());
        };
        let object = JsonObject::new(self.path_of(name), value)?;
        object
            .map
            .iter()
            .map(|(key, value)| {
                as_string(&object.path_of(key), value).map(|text| (key.clone(), text))
            })
            .collect()
    }

    /// An optional monitored resource (`{"type": ..., "labels": {...}}`), as
    /// both log entries and incidents carry one: its type and its labels.
    pub(crate) fn monitored_resource(
        &self,
        name: &str,
    ) -> Result<(Option<String>, BTreeMap<String, String>), EventError> {
        match self.opt_object(name)? {
            Some(resource) => Ok((resource.opt_string("type")?, resource.string_map("labels")?)),
            None => Ok((None, BTreeMap::new())),
        }
    }

    /// An optional field kept as raw JSON, for parts whose shape depends on
    /// the API method (an audit log's request and response).
    pub(crate) fn raw(&self, name: &str) -> Option<Value> {
        self.get(name).cloned()
    }

    /// A required base64 field decoding to exactly `N` bytes.
    pub(crate) fn base64_bytes<const N: usize>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<[u8; N], EventError> {
        let path = self.path_of(name);
        let text = self.string(name)?;
        decode_fixed(&path, &text, what)
    }
}

/// Decodes standard base64 that must hold exactly `N` bytes.
fn decode_fixed<const N: usize>(path: &str, text: &str, what: &str) -> Result<[u8; N], EventError> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|_| EventError::invalid(path, format!("invalid base64: {}", quote(text))))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| {
        EventError::invalid(
            path,
            format!(
                "expected base64 of {N} bytes ({what}), got {} bytes",
                bytes.len()
            ),
        )
    })
}

/// Decodes standard base64 of any length (Pub/Sub message data).
pub(crate) fn decode_base64(path: &str, text: &str) -> Result<Vec<u8>, EventError> {
    STANDARD
        .decode(text)
        .map_err(|e| EventError::invalid(path, format!("invalid base64 ({e})")))
}

/// The value as a string, or an error naming `path`.
pub(crate) fn as_string(path: &str, value: &Value) -> Result<String, EventError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        other => Err(EventError::invalid(
            path,
            format!("expected a string, got {}", excerpt(other)),
        )),
    }
}

/// A 64-bit integer in either form the proto3 JSON mapping lets a parser
/// accept: a JSON string of decimal digits or a JSON number, also in
/// exponent notation, whose value is an integer. Anything else (a fraction, text, a value out of `T`'s range) is
/// an error naming `path`.
fn proto3_integer<T: std::str::FromStr>(path: &str, value: &Value) -> Result<T, EventError> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) if number.is_i64() || number.is_u64() => number.to_string(),
        Value::Number(number) => match number.as_f64() {
            // `1e3` or `1000.0`: integral, and exact in a double below 2^53.
            Some(float) if float.fract() == 0.0 && float.abs() < EXACT_IN_DOUBLE => {
                format!("{float:.0}")
            }
            Some(float) if float.fract() == 0.0 => {
                return Err(EventError::invalid(
                    path,
                    format!("integer out of range, got {}", excerpt(value)),
                ));
            }
            _ => {
                return Err(EventError::invalid(
                    path,
                    format!("expected an integer, got {}", excerpt(value)),
                ));
            }
        },
        other => {
            return Err(EventError::invalid(
                path,
                format!("expected an integer, got {}", excerpt(other)),
            ));
        }
    };
    text.parse().map_err(|_| {
        let digits = text.strip_prefix('-').unwrap_or(&text);
        let problem = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            "integer out of range"
        } else {
            "expected an integer"
        };
        EventError::invalid(path, format!("{problem}, got {}", excerpt(value)))
    })
}

/// Parses an RFC 3339 timestamp.
pub(crate) fn parse_timestamp(path: &str, text: &str) -> Result<DateTime<Utc>, EventError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            EventError::invalid(
                path,
                format!("expected an RFC 3339 timestamp, got {}", quote(text)),
            )
        })
}

/// A JSON value rendered for an error message, cut to a readable length.
pub(crate) fn excerpt(value: &Value) -> String {
    shorten(&value.to_string())
}

/// A string quoted for an error message, cut to a readable length.
pub(crate) fn quote(text: &str) -> String {
    shorten(&format!("{text:?}"))
}

/// Cuts `text` to [`EXCERPT_CHARS`] characters, marking the cut.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
