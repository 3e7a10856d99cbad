//! Column type inference from sample values, shared by the CSV and JSON converters.
//!
//! The rules are deliberately conservative: a value with a leading zero such as a district key
//! `05515` stays text, and a column whose values disagree becomes text (or `Float64` where
//! integers and decimals mix).

use arrow::datatypes::{DataType, TimeUnit};

/// The narrowest type seen so far for one column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only empty values so far.
    #[default]
    Unknown,
    Bool,
    Int,
    Float,
    Date,
    /// Timestamp without an offset.
    Timestamp,
    /// Timestamp with `Z` or an offset.
    TimestampTz,
    Text,
}

impl Kind {
    /// Combines the kind so far with the kind of one more value.
    pub(crate) fn merge(self, other: Kind) -> Kind {
        use Kind::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Unknown, b) => b,
            (a, Unknown) => a,
            (Int, Float) | (Float, Int) => Float,
            _ => Text,
        }
    }

    /// The Arrow type for the column.
    pub(crate) fn data_type(self) -> DataType {
        match self {
            Kind::Unknown | Kind::Text => DataType::Utf8,
            Kind::Bool => DataType::Boolean,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        }
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_int(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    all_digits(digits) && (digits == "0" || !digits.starts_with('0')) && s.parse::<i64>().is_ok()
}

fn is_float(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let int_part = body.split(['.', 'e', 'E']).next().unwrap_or("");
    body.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && body.bytes().any(|b| b.is_ascii_digit())
        && !(int_part.len() > 1 && int_part.starts_with('0'))
        && s.parse::<f64>().is_ok()
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    s.is_ascii()
        && b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && all_digits(&s[0..4])
        && all_digits(&s[5..7])
        && all_digits(&s[8..10])
        && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// Classifies a timestamp: `Some(true)` with an offset, `Some(false)` without.
fn timestamp_kind(s: &str) -> Option<bool> {
    if s.len() < 19
        || !s.is_ascii()
        || !is_date(&s[..10])
        || !matches!(s.as_bytes()[10], b'T' | b' ')
    {
        return None;
    }
    if chrono::DateTime::parse_from_rfc3339(&s.replacen(' ', "T", 1)).is_ok() {
        return Some(true);
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if chrono::NaiveDateTime::parse_from_str(s, fmt).is_ok() {
            return Some(false);
        }
    }
    None
}

/// The kind of one textual value; an empty value is `Unknown` (it becomes null).
pub(crate) fn classify(s: &str) -> Kind {
    if s.is_empty() {
        Kind::Unknown
    } else if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
        Kind::Bool
    } else if is_int(s) {
        Kind::Int
    } else if is_float(s) {
        Kind::Float
    } else if is_date(s) {
        Kind::Date
    } else {
        match timestamp_kind(s) {
            Some(true) => Kind::TimestampTz,
            Some(false) => Kind::Timestamp,
            None => Kind::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_values() {
        assert_eq!(classify("05515"), Kind::Text);
        assert_eq!(classify("0"), Kind::Int);
        assert_eq!(classify("-42"), Kind::Int);
        assert_eq!(classify("56.73"), Kind::Float);
        assert_eq!(classify("0.5"), Kind::Float);
        assert_eq!(classify("1e3"), Kind::Float);
        assert_eq!(classify("inf"), Kind::Text);
        assert_eq!(classify("56,73"), Kind::Text);
        assert_eq!(classify("TRUE"), Kind::Bool);
        assert_eq!(classify("2024-02-29"), Kind::Date);
        assert_eq!(classify("2023-02-29"), Kind::Text);
        assert_eq!(classify("2024-01-01T10:00:00"), Kind::Timestamp);
        assert_eq!(classify("2024-01-01 10:00:00"), Kind::Timestamp);
        assert_eq!(classify("2024-01-01T10:00:00Z"), Kind::TimestampTz);
        assert_eq!(classify("2024-01-01T10:00:00+01:00"), Kind::TimestampTz);
        assert_eq!(classify(""), Kind::Unknown);
        assert_eq!(classify("Werra-Meißner-Kreis"), Kind::Text);
        assert_eq!(classify("2024-01-0ß"), Kind::Text);
        assert_eq!(classify("2024-01-01Tßßßßßßßß"), Kind::Text);
    }

    #[test]
    fn merges_kinds() {
        assert_eq!(Kind::Int.merge(Kind::Float), Kind::Float);
        assert_eq!(Kind::Unknown.merge(Kind::Date), Kind::Date);
        assert_eq!(Kind::Int.merge(Kind::Text), Kind::Text);
        assert_eq!(Kind::Date.merge(Kind::Timestamp), Kind::Text);
    }
}
