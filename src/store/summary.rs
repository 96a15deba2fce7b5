//! An action record's `summary`, parsed on first use.
//!
//! `hft status` over 10,000 experiments reads 30,000 records and looks inside few of their
//! summaries (a dataset's shape for `init`'s key, a training's resumed epoch); parsing every
//! evaluation's metrics into a `serde_json::Value` was most of its allocation. A record read
//! from the store keeps its summary's JSON text and parses it when first asked; one built in
//! memory holds its value. Either way it reads as a `serde_json::Value` (`Deref`), compares
//! and serialises by value, and clones share it (10,000 reports hold the same records).

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

#[derive(Clone)]
pub struct Summary(Arc<Inner>);

struct Inner {
    /// The JSON text, when the value is parsed on demand.
    text: Option<Box<str>>,
    value: OnceLock<Value>,
}

impl Summary {
    /// A summary whose value is `text` parsed on first use. The caller vouches that `text` is
    /// one JSON value (a sealed record's bytes); should it not parse, the value is `null`.
    pub fn from_json_text(text: &str) -> Summary {
        Summary(Arc::new(Inner {
            text: Some(text.into()),
            value: OnceLock::new(),
        }))
    }

    /// The value (parsed now if it was not yet).
    pub fn value(&self) -> &Value {
        self.0.value.get_or_init(|| {
            self.0
                .text
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(Value::Null)
        })
    }
}

impl From<Value> for Summary {
    fn from(value: Value) -> Summary {
        Summary(Arc::new(Inner {
            text: None,
            value: OnceLock::from(value),
        }))
    }
}

impl Default for Summary {
    fn default() -> Summary {
        Value::Null.into()
    }
}

impl Deref for Summary {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value()
    }
}

impl AsRef<Value> for Summary {
    fn as_ref(&self) -> &Value {
        self.value()
    }
}

impl PartialEq for Summary {
    fn eq(&self, other: &Summary) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.value() == other.value()
    }
}

impl fmt::Debug for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value().fmt(f)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value().fmt(f)
    }
}

impl Serialize for Summary {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Summary {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Summary, D::Error> {
        Value::deserialize(d).map(Summary::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lazy_summary_reads_compares_and_writes_as_its_value() {
        let value = serde_json::json!({"rows": 3, "shape": [1, 2], "x": 0.1});
        let text = serde_json::to_string_pretty(&value).unwrap();
        let lazy = Summary::from_json_text(&text);
        let eager = Summary::from(value.clone());
        assert_eq!(lazy, eager);
        assert_eq!(lazy["rows"], 3);
        assert_eq!(*lazy, value);
        assert_eq!(
            serde_json::to_string(&lazy).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
        assert_eq!(lazy.to_string(), value.to_string());
        assert!(Summary::from_json_text("{not json").is_null());
        assert!(Summary::default().is_null());
    }
}
