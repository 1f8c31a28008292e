//! Serde helpers that accept a struct only in its JSON object form.
//!
//! Derived `Deserialize` also accepts a struct written as an array of its field values
//! (`[null, null]` for a two-field struct), which no client means and the OpenAPI
//! document does not allow; the schema fuzzer found a plan's `schemas` accepted that
//! way. Nested struct fields of requests go through these.

use serde::de::{DeserializeOwned, Error};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

fn from_object<T: DeserializeOwned, E: Error>(value: Value) -> Result<T, E> {
    if !value.is_object() {
        return Err(E::custom(format!("expected a JSON object, found {}", kind(&value))));
    }
    T::deserialize(value).map_err(E::custom)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An optional struct: `null` or absent is `None`, an object is parsed, anything else refused.
pub fn optional_object<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        value => from_object(value).map(Some),
    }
}

/// An optional free-form JSON object (metadata, context, parameters): `null` or absent
/// is `None`; anything but an object is refused.
pub fn optional_json_object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        value @ Value::Object(_) => Ok(Some(value)),
        other => Err(D::Error::custom(format!("expected a JSON object, found {}", kind(&other)))),
    }
}

/// A list of structs, each an object.
pub fn objects<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    match Value::deserialize(d)? {
        Value::Array(items) => items.into_iter().map(from_object).collect(),
        other => Err(D::Error::custom(format!("expected an array, found {}", kind(&other)))),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    struct Inner {
        a: Option<u8>,
    }

    #[derive(Debug, Deserialize)]
    struct Outer {
        #[serde(default, deserialize_with = "super::optional_object")]
        one: Option<Inner>,
        #[serde(default, deserialize_with = "super::objects")]
        many: Vec<Inner>,
    }

    #[test]
    fn the_array_form_of_a_struct_is_refused() {
        let parsed: Outer =
            serde_json::from_value(json!({"one": {"a": 1}, "many": [{"a": 2}]})).expect("objects parse");
        assert_eq!(parsed.one.and_then(|i| i.a), Some(1));
        assert_eq!(parsed.many.first().and_then(|i| i.a), Some(2));
        let empty: Outer = serde_json::from_value(json!({"one": null})).expect("null is none");
        assert!(empty.one.is_none() && empty.many.is_empty());
        assert!(serde_json::from_value::<Outer>(json!({"one": [1]})).is_err());
        assert!(serde_json::from_value::<Outer>(json!({"many": [[1]]})).is_err());
        assert!(serde_json::from_value::<Outer>(json!({"many": {"a": 1}})).is_err());
    }
}
