//! The bridge between YAML text and the typed topology: a serde deserializer
//! over saphyr's marked tree that knows the field path and the line:column of
//! every node, so each problem can say where it is.
//!
//! Every error is recorded once, at the node where it happens, into a
//! [`Recorder`]; it then travels up as a plain serde error. [`Parsed`] stops it
//! there: a list element that fails becomes [`Parsed::Failed`] and its siblings
//! are still read, so one run reports the problems of every element.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use saphyr::{MarkedYaml, Scalar, ScalarStyle, Tag, YamlData, YamlLoader};
use saphyr_parser::Parser;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// A 1-based line and column in the source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    fn of(marker: &saphyr::Marker) -> Self {
        Self {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }
}

/// One problem found while reading: where, which field, what.
#[derive(Debug)]
pub(super) struct Located {
    pub position: Position,
    pub path: String,
    pub message: String,
}

/// Parses `text` as exactly one YAML document.
pub(super) fn load(text: &str) -> Result<MarkedYaml<'_>, Located> {
    let mut loader = YamlLoader::<MarkedYaml>::default();
    loader.early_parse(false);
    let mut parser = Parser::new_from_str(text);
    let outcome = parser.load(&mut loader, true);
    let error = outcome.err().or_else(|| loader.error().cloned());
    if let Some(error) = error {
        return Err(Located {
            position: Position::of(error.marker()),
            path: String::new(),
            message: format!("YAML syntax error: {}", error.info()),
        });
    }
    let mut documents = loader.into_documents().into_iter();
    let Some(root) = documents.next() else {
        return Err(Located {
            position: Position { line: 1, column: 1 },
            path: String::new(),
            message: "the file is empty: expected a topology document".into(),
        });
    };
    if let Some(extra) = documents.next() {
        return Err(Located {
            position: Position::of(&extra.span.start),
            path: String::new(),
            message: "a topology file holds exactly one YAML document".into(),
        });
    }
    Ok(root)
}

/// Field path → position of every node: the key for a mapping entry, the
/// element for a sequence item. Semantic checks look their problems up here.
pub(super) struct PositionIndex(HashMap<String, Position>);

impl PositionIndex {
    /// Indexes every node under `root`.
    pub fn build(root: &MarkedYaml<'_>) -> Self {
        let mut index = HashMap::new();
        index.insert(String::new(), Position::of(&root.span.start));
        let mut stack = vec![(String::new(), root)];
        while let Some((path, node)) = stack.pop() {
            match data(node) {
                YamlData::Mapping(entries) => {
                    for (key, value) in entries {
                        let child = join_key(&path, key);
                        index.insert(child.clone(), Position::of(&key.span.start));
                        stack.push((child, value));
                    }
                }
                YamlData::Sequence(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let child = format!("{path}[{i}]");
                        index.insert(child.clone(), Position::of(&item.span.start));
                        stack.push((child, item));
                    }
                }
                _ => {}
            }
        }
        Self(index)
    }

    /// The position of `path`, or of its nearest ancestor that is in the file
    /// (a missing field is reported where its parent is).
    pub fn find(&self, path: &str) -> Position {
        let mut current = path;
        loop {
            if let Some(position) = self.0.get(current) {
                return *position;
            }
            match current.rfind(['.', '[']) {
                Some(cut) => current = &current[..cut],
                None => {
                    return self
                        .0
                        .get("")
                        .copied()
                        .unwrap_or(Position { line: 1, column: 1 });
                }
            }
        }
    }
}

/// Collects every problem met while deserializing.
#[derive(Default)]
pub(super) struct Recorder(RefCell<Vec<Located>>);

impl Recorder {
    /// The problems recorded so far, in the order they were met.
    pub fn into_problems(self) -> Vec<Located> {
        self.0.into_inner()
    }
}

/// Deserializes `T` from `root`, recording every problem.
pub(super) fn deserialize<'de, T: de::Deserialize<'de>>(
    root: &MarkedYaml<'_>,
    recorder: &Recorder,
) -> Option<T> {
    T::deserialize(NodeDeserializer {
        node: root,
        path: String::new(),
        recorder,
    })
    .ok()
}

/// A value that may have failed to deserialize; its problems are recorded.
#[derive(Debug)]
pub(super) enum Parsed<T> {
    Ok(T),
    Failed,
}

impl<T> Parsed<T> {
    /// The value, if it was read without problems.
    pub fn get(&self) -> Option<&T> {
        match self {
            Parsed::Ok(value) => Some(value),
            Parsed::Failed => None,
        }
    }

    /// The value, if it was read without problems.
    pub fn into_option(self) -> Option<T> {
        match self {
            Parsed::Ok(value) => Some(value),
            Parsed::Failed => None,
        }
    }
}

impl<'de, T: de::Deserialize<'de>> de::Deserialize<'de> for Parsed<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The deserializer in this module has already recorded the error.
        Ok(T::deserialize(deserializer).map_or(Parsed::Failed, Parsed::Ok))
    }
}

/// A serde error; `located` is set once it has been recorded at its node.
#[derive(Debug)]
pub(super) struct Error {
    message: String,
    located: bool,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<M: fmt::Display>(message: M) -> Self {
        Self {
            message: message.to_string(),
            located: false,
        }
    }
}

fn data<'a, 'i>(mut node: &'a MarkedYaml<'i>) -> &'a YamlData<'i, MarkedYaml<'i>> {
    while let YamlData::Tagged(_, inner) = &node.data {
        node = inner;
    }
    &node.data
}

fn key_text<'a>(key: &'a MarkedYaml<'_>) -> Cow<'a, str> {
    match data(key) {
        YamlData::Representation(text, _, _) => Cow::Borrowed(text.as_ref()),
        YamlData::Value(Scalar::String(text)) => Cow::Borrowed(text.as_ref()),
        YamlData::Value(Scalar::Integer(i)) => Cow::Owned(i.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Cow::Owned(b.to_string()),
        _ => Cow::Borrowed("?"),
    }
}

fn join_key(parent: &str, key: &MarkedYaml<'_>) -> String {
    let key = key_text(key);
    if parent.is_empty() {
        key.into_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// What a scalar node holds: its source text and its resolved value.
struct ScalarNode<'a> {
    text: Cow<'a, str>,
    value: Option<Scalar<'a>>,
}

fn scalar<'a>(node: &'a MarkedYaml<'_>) -> Option<ScalarNode<'a>> {
    match data(node) {
        YamlData::Representation(text, style, tag) => {
            let tag: Option<Cow<'_, Tag>> = tag.as_ref().map(|t| Cow::Borrowed(t.as_ref()));
            let value = Scalar::parse_from_cow_and_metadata(
                Cow::Borrowed(text.as_ref()),
                *style,
                tag.as_ref(),
            );
            let value = match (value, style) {
                // A plain scalar resolved by the core schema; quoted is a string.
                (Some(v), _) => Some(v),
                (None, ScalarStyle::Plain) => None,
                (None, _) => Some(Scalar::String(Cow::Borrowed(text.as_ref()))),
            };
            Some(ScalarNode {
                text: Cow::Borrowed(text.as_ref()),
                value,
            })
        }
        YamlData::Value(value) => {
            let text = match value {
                Scalar::String(s) => Cow::Borrowed(s.as_ref()),
                Scalar::Null => Cow::Borrowed("null"),
                Scalar::Boolean(b) => Cow::Owned(b.to_string()),
                Scalar::Integer(i) => Cow::Owned(i.to_string()),
                Scalar::FloatingPoint(f) => Cow::Owned(f.to_string()),
            };
            let value = match value {
                Scalar::String(s) => Scalar::String(Cow::Borrowed(s.as_ref())),
                Scalar::Null => Scalar::Null,
                Scalar::Boolean(b) => Scalar::Boolean(*b),
                Scalar::Integer(i) => Scalar::Integer(*i),
                Scalar::FloatingPoint(f) => Scalar::FloatingPoint(*f),
            };
            Some(ScalarNode {
                text,
                value: Some(value),
            })
        }
        _ => None,
    }
}

/// Deserializes one node; `path` is its field path in the file.
struct NodeDeserializer<'a, 'i> {
    node: &'a MarkedYaml<'i>,
    path: String,
    recorder: &'a Recorder,
}

impl<'a, 'i> NodeDeserializer<'a, 'i> {
    /// Records `error` at this node unless it was recorded deeper down.
    fn locate(&self, mut error: Error) -> Error {
        if !error.located {
            self.recorder.0.borrow_mut().push(Located {
                position: Position::of(&self.node.span.start),
                path: self.path.clone(),
                message: error.message.clone(),
            });
            error.located = true;
        }
        error
    }

    fn child(&self, node: &'a MarkedYaml<'i>, path: String) -> NodeDeserializer<'a, 'i> {
        NodeDeserializer {
            node,
            path,
            recorder: self.recorder,
        }
    }

    fn visit_any<'de, V: Visitor<'de>>(&self, visitor: V) -> Result<V::Value, Error> {
        match data(self.node) {
            YamlData::Sequence(items) => visitor.visit_seq(SequenceAccess {
                items: items.iter().enumerate(),
                parent: self,
            }),
            YamlData::Mapping(_) => visitor.visit_map(self.mapping_access()),
            YamlData::Alias(_) | YamlData::BadValue => Err(de::Error::custom(
                "this value cannot be read (bad alias or tag)",
            )),
            _ => match scalar(self.node) {
                Some(ScalarNode { value: Some(v), .. }) => match v {
                    Scalar::Null => visitor.visit_unit(),
                    Scalar::Boolean(b) => visitor.visit_bool(b),
                    Scalar::Integer(i) => visitor.visit_i64(i),
                    Scalar::FloatingPoint(f) => visitor.visit_f64(f.into_inner()),
                    Scalar::String(s) => visitor.visit_str(&s),
                },
                _ => Err(de::Error::custom("value does not match its tag")),
            },
        }
    }

    fn mapping_access(&self) -> MappingAccess<'_, 'a, 'i> {
        let entries = match data(self.node) {
            YamlData::Mapping(entries) => entries.iter().collect(),
            _ => Vec::new(),
        };
        MappingAccess {
            entries: entries.into_iter(),
            pending: None,
            parent: self,
        }
    }
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'_, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_any(visitor).map_err(|e| self.locate(e))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // Plain scalars such as `4512398712` or `1.10` are ids here, read as written.
        let result = match scalar(self.node) {
            Some(ScalarNode {
                value: Some(Scalar::Null),
                ..
            }) => visitor.visit_unit(),
            Some(ScalarNode { text, .. }) => visitor.visit_str(&text),
            None => self.visit_any(visitor),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match scalar(self.node) {
            Some(ScalarNode {
                value: Some(Scalar::Null),
                ..
            }) => visitor.visit_none().map_err(|e| self.locate(e)),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let result = match data(self.node) {
            YamlData::Mapping(entries) => {
                let mut iter = entries.iter();
                match (iter.next(), iter.next()) {
                    (Some((key, value)), None) => visitor.visit_enum(EnumAccess {
                        key,
                        value,
                        parent: &self,
                    }),
                    _ => Err(de::Error::custom(format_args!(
                        "expected one of {} (a name, or a mapping with a single key)",
                        variants.join(", ")
                    ))),
                }
            }
            _ => match scalar(self.node) {
                Some(ScalarNode {
                    value: Some(Scalar::String(_)),
                    text,
                }) => visitor.visit_enum(text.as_ref().into_deserializer()),
                _ => Err(de::Error::custom(format_args!(
                    "expected one of {}",
                    variants.join(", ")
                ))),
            },
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct
    }
}

struct SequenceAccess<'p, 'a, 'i> {
    items: std::iter::Enumerate<std::slice::Iter<'a, MarkedYaml<'i>>>,
    parent: &'p NodeDeserializer<'a, 'i>,
}

impl<'de> de::SeqAccess<'de> for SequenceAccess<'_, '_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some((i, item)) => {
                let path = format!("{}[{i}]", self.parent.path);
                seed.deserialize(self.parent.child(item, path)).map(Some)
            }
            None => Ok(None),
        }
    }
}

struct MappingAccess<'p, 'a, 'i> {
    entries: std::vec::IntoIter<(&'a MarkedYaml<'i>, &'a MarkedYaml<'i>)>,
    pending: Option<(&'a MarkedYaml<'i>, String)>,
    parent: &'p NodeDeserializer<'a, 'i>,
}

impl<'de> de::MapAccess<'de> for MappingAccess<'_, '_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((key, value)) => {
                let path = join_key(&self.parent.path, key);
                let key = seed.deserialize(self.parent.child(key, path.clone()))?;
                self.pending = Some((value, path));
                Ok(Some(key))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.pending.take() {
            Some((value, path)) => seed.deserialize(self.parent.child(value, path)),
            None => Err(de::Error::custom("a mapping value was read before its key")),
        }
    }
}

struct EnumAccess<'p, 'a, 'i> {
    key: &'a MarkedYaml<'i>,
    value: &'a MarkedYaml<'i>,
    parent: &'p NodeDeserializer<'a, 'i>,
}

impl<'de, 'p, 'a, 'i> de::EnumAccess<'de> for EnumAccess<'p, 'a, 'i> {
    type Error = Error;
    type Variant = NodeDeserializer<'a, 'i>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Error> {
        let path = join_key(&self.parent.path, self.key);
        let variant = seed.deserialize(self.parent.child(self.key, path.clone()))?;
        Ok((variant, self.parent.child(self.value, path)))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDeserializer<'_, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}
