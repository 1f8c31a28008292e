//! Kubernetes resource quantities (`100m`, `1.5`, `512Mi`, `1e3`, `1Ei`), read as a
//! number of the resource's unit (cores, bytes) to compare with the operator's caps.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use serde_json::Value;

/// A quantity: its value in the resource's unit, and the text it was written as.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    /// The value (`0.1` for `100m`, `1073741824` for `1Gi`).
    pub value: f64,
    /// As written.
    text: String,
}

/// Suffixes and their factors, binary first so `Mi` is not read as `M` then `i`.
const SUFFIXES: &[(&str, f64)] = &[
    ("Ki", 1024.0),
    ("Mi", 1_048_576.0),
    ("Gi", 1_073_741_824.0),
    ("Ti", 1_099_511_627_776.0),
    ("Pi", 1_125_899_906_842_624.0),
    ("Ei", 1_152_921_504_606_846_976.0),
    ("n", 1e-9),
    ("u", 1e-6),
    ("m", 1e-3),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
    ("P", 1e15),
    ("E", 1e18),
];

/// The longest quantity text read: Kubernetes' own are short.
const MAX_TEXT: usize = 64;

impl FromStr for Quantity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{:?} is not a quantity like 500m, 2, 512Mi or 1e3",
                text.chars().take(MAX_TEXT).collect::<String>()
            )
        };
        if text.is_empty() || text.len() > MAX_TEXT {
            return Err(bad());
        }
        let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
        let (number, suffix) = text.split_at(end);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let factor = match SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            Some((_, factor)) => *factor,
            None if suffix.is_empty() => 1.0,
            // `1e3`, `1E-2`: a decimal exponent (`1E` alone is exa, above).
            None => {
                let exponent = suffix.strip_prefix(['e', 'E']).ok_or_else(bad)?;
                10f64.powi(exponent.parse::<i32>().map_err(|_| bad())?)
            }
        };
        let value = number * factor;
        if !value.is_finite() || value < 0.0 {
            return Err(bad());
        }
        Ok(Self { value, text: text.to_owned() })
    }
}

impl Quantity {
    /// A quantity as a manifest gives it: a string, or a plain JSON number.
    pub fn of(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(text) => text.parse(),
            Value::Number(n) => n.to_string().parse(),
            other => Err(format!("{other} is not a quantity")),
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// As written: `32Gi`.
impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> f64 {
        text.parse::<Quantity>().unwrap().value
    }

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        assert_eq!(value("100m"), 0.1);
        assert_eq!(value("2"), 2.0);
        assert_eq!(value("1.5"), 1.5);
        assert_eq!(value("512Mi"), 536_870_912.0);
        assert_eq!(value("1G"), 1e9);
        assert_eq!(value("1e3"), 1000.0);
        assert_eq!(value("1E"), 1e18);
        assert_eq!(value("1Ei"), 1_152_921_504_606_846_976.0);
        assert_eq!(Quantity::of(&serde_json::json!(4)).unwrap().value, 4.0);
        assert_eq!("32Gi".parse::<Quantity>().unwrap().to_string(), "32Gi");
    }

    #[test]
    fn what_is_not_a_quantity_is_refused() {
        for text in ["", "-1", "1Xi", "abc", "1e", "1e999", "1.2.3", "Mi", &"9".repeat(65)] {
            assert!(text.parse::<Quantity>().is_err(), "{text:?}");
        }
        assert!(Quantity::of(&serde_json::json!([1])).is_err());
    }
}
