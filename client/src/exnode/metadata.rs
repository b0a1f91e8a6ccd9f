//! Typed metadata and end-to-end function trees, as LoRS writes them (PROTOCOL.md §14.1).
//!
//! LoRS metadata is a name, a type (`string`, `integer`, `double`, `meta`) and a value; `meta`
//! nests a list of further metadata. Unknown metadata is kept verbatim so an exNode written by
//! another tool survives a read-modify-write through ours.

use serde::{Deserialize, Serialize};

/// One typed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum MetaValue {
    /// `type="string"`: free text.
    String(String),
    /// `type="integer"`: LoRS prints these with `%lld`.
    Integer(i64),
    /// `type="double"`: e.g. `lorsversion` 0.82.
    Double(f64),
    /// `type="meta"`: a nested list or struct (LoDN's `Type` {Name, Version}).
    Meta(Vec<Metadata>),
}

impl MetaValue {
    /// The LoRS type word.
    pub fn type_word(&self) -> &'static str {
        match self {
            MetaValue::String(_) => "string",
            MetaValue::Integer(_) => "integer",
            MetaValue::Double(_) => "double",
            MetaValue::Meta(_) => "meta",
        }
    }
}

/// A named, typed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The `name` attribute; unique within its parent by convention only.
    pub name: String,
    /// The typed value.
    #[serde(flatten)]
    pub value: MetaValue,
}

impl Metadata {
    /// A string entry.
    pub fn string(name: &str, value: &str) -> Metadata {
        Metadata { name: name.to_owned(), value: MetaValue::String(value.to_owned()) }
    }

    /// An integer entry.
    pub fn integer(name: &str, value: i64) -> Metadata {
        Metadata { name: name.to_owned(), value: MetaValue::Integer(value) }
    }

    /// A double entry.
    pub fn double(name: &str, value: f64) -> Metadata {
        Metadata { name: name.to_owned(), value: MetaValue::Double(value) }
    }

    /// A nested entry.
    pub fn meta(name: &str, children: Vec<Metadata>) -> Metadata {
        Metadata { name: name.to_owned(), value: MetaValue::Meta(children) }
    }
}

/// Finds the first entry called `name` in a list.
pub fn find<'a>(list: &'a [Metadata], name: &str) -> Option<&'a MetaValue> {
    list.iter().find(|m| m.name == name).map(|m| &m.value)
}

/// An end-to-end transform applied to a mapping's bytes (`checksum`, `des_encrypt`,
/// `aes_encrypt`, `xor_encrypt`, `zlib_compress`, LoDN's `identity`). Nesting records order:
/// the outermost function was applied last, so a reader undoes it first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Function {
    /// The `name` attribute.
    pub name: String,
    /// `metadata` children: the function's own parameters (block size, digests…).
    #[serde(default)]
    pub metadata: Vec<Metadata>,
    /// `argument` children: like metadata, e.g. LoDN's `KEY` for `identity`.
    #[serde(default)]
    pub arguments: Vec<Metadata>,
    /// Nested functions, applied before this one.
    #[serde(default)]
    pub inner: Vec<Function>,
}

impl Function {
    /// A function with a name and nothing else yet.
    pub fn named(name: &str) -> Function {
        Function {
            name: name.to_owned(),
            metadata: Vec::new(),
            arguments: Vec::new(),
            inner: Vec::new(),
        }
    }
}
