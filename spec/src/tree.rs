//! The spanned value tree that both spellings (YAML and KDL) are read into before decoding,
//! so that decoding, validation and provenance are written once for both.

use crate::diagnostic::Loc;

/// A value with the position where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub value: Value,
    pub loc: Loc,
    /// KDL writes a one-element list as a single argument; decoding a list accepts a scalar
    /// from KDL (and only from KDL) as a list of one.
    pub scalar_may_be_list: bool,
    /// Characters before the text of a string value at `loc` (1 for a quote), so errors inside
    /// a string (a selector) point at the right column.
    pub text_col_offset: u32,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub name: String,
    pub loc: Loc,
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}
