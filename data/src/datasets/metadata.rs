//! The metadata a user gives with an import or an update, and its checks: lengths,
//! characters, vocabulary values, formats and table names.

use allmende_protocol::dcat::{LICENSES, THEMES};
use serde::{Deserialize, Serialize};

use super::DatasetError;

/// Metadata given with an import or an update; fields left `None` keep their value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataInput {
    /// `dct:title`.
    pub title: Option<String>,
    /// `dct:description`.
    pub description: Option<String>,
    /// DCAT-AP.de licence identifier, e.g. `cc-by/4.0` or `dl-by-de/2.0`.
    pub license: Option<String>,
    /// EU data-theme codes, e.g. `TRAN`.
    pub themes: Option<Vec<String>>,
    /// Keywords.
    pub keywords: Option<Vec<String>>,
    /// The SQL table name; derived from the title when absent.
    pub slug: Option<String>,
    /// Contact e-mail; defaults to the node's.
    pub contact_email: Option<String>,
    /// Contact name; defaults to the node's.
    pub contact_name: Option<String>,
    /// Start of the temporal coverage (ISO 8601).
    pub temporal_start: Option<String>,
    /// End of the temporal coverage (ISO 8601).
    pub temporal_end: Option<String>,
    /// Spatial coverage: a URI or GeoJSON geometry text.
    pub spatial: Option<String>,
    /// `dct:conformsTo`: the common schema the data follows.
    pub conforms_to: Option<String>,
}

impl MetadataInput {
    /// Checks lengths, characters, vocabulary values and formats.
    pub fn validate(&self) -> Result<(), DatasetError> {
        let bad = |m: String| Err(DatasetError::InvalidMetadata(m));
        let texts = [
            ("title", self.title.as_deref(), MAX_TITLE_BYTES, false),
            (
                "description",
                self.description.as_deref(),
                MAX_DESCRIPTION_BYTES,
                true,
            ),
            ("license", self.license.as_deref(), MAX_SHORT_BYTES, false),
            ("slug", self.slug.as_deref(), MAX_SHORT_BYTES, false),
            (
                "contact_email",
                self.contact_email.as_deref(),
                MAX_SHORT_BYTES,
                false,
            ),
            (
                "contact_name",
                self.contact_name.as_deref(),
                MAX_SHORT_BYTES,
                false,
            ),
            (
                "temporal_start",
                self.temporal_start.as_deref(),
                MAX_SHORT_BYTES,
                false,
            ),
            (
                "temporal_end",
                self.temporal_end.as_deref(),
                MAX_SHORT_BYTES,
                false,
            ),
            ("spatial", self.spatial.as_deref(), MAX_SPATIAL_BYTES, false),
            (
                "conforms_to",
                self.conforms_to.as_deref(),
                MAX_SHORT_BYTES,
                false,
            ),
        ];
        for (name, value, max, lines) in texts {
            if let Some(v) = value {
                check_text(name, v, max, lines)?;
            }
        }
        for (name, list) in [("themes", &self.themes), ("keywords", &self.keywords)] {
            let list = list.as_deref().unwrap_or_default();
            if list.len() > MAX_LIST_ITEMS {
                return bad(format!(
                    "`{name}` has {} entries; at most {MAX_LIST_ITEMS} are allowed",
                    list.len()
                ));
            }
            for item in list {
                check_text(name, item, MAX_KEYWORD_BYTES, false)?;
            }
        }
        if let Some(l) = &self.license
            && !LICENSES.contains(&l.as_str())
        {
            return bad(format!(
                "licence `{l}` is not in the DCAT-AP.de licence vocabulary (e.g. {})",
                LICENSES[..4].join(", ")
            ));
        }
        for t in self.themes.iter().flatten() {
            if !THEMES.contains(&t.as_str()) {
                return bad(format!(
                    "theme `{t}` is not an EU data-theme code (one of {})",
                    THEMES.join(", ")
                ));
            }
        }
        if let Some(s) = &self.slug {
            validate_slug(s)?;
        }
        for (name, value) in [
            ("temporal_start", &self.temporal_start),
            ("temporal_end", &self.temporal_end),
        ] {
            if let Some(v) = value
                && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_err()
                && chrono::DateTime::parse_from_rfc3339(v).is_err()
            {
                return bad(format!(
                    "`{name}` must be a date (YYYY-MM-DD) or an RFC 3339 date-time, got `{v}`"
                ));
            }
        }
        if let Some(e) = &self.contact_email
            && (!e.contains('@') || e.contains(char::is_whitespace))
        {
            return bad(format!("`{e}` is not an e-mail address"));
        }
        Ok(())
    }
}

/// Longest title, in bytes.
pub const MAX_TITLE_BYTES: usize = 1000;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 64 << 10;
/// Longest spatial coverage (a URI or GeoJSON geometry text), in bytes.
pub const MAX_SPATIAL_BYTES: usize = 16 << 10;
/// Longest licence, slug, contact, date or `conforms_to` value, in bytes.
pub const MAX_SHORT_BYTES: usize = 512;
/// Longest keyword or theme, in bytes.
pub const MAX_KEYWORD_BYTES: usize = 200;
/// Most keywords, and most themes.
pub const MAX_LIST_ITEMS: usize = 100;

/// Checks the length of a metadata value and that it holds no control characters (a
/// description may hold line breaks and tabs).
fn check_text(name: &str, value: &str, max: usize, lines: bool) -> Result<(), DatasetError> {
    if value.len() > max {
        return Err(DatasetError::InvalidMetadata(format!(
            "`{name}` is {} bytes long; at most {max} bytes are allowed",
            value.len()
        )));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() && !(lines && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(DatasetError::InvalidMetadata(format!(
            "`{name}` holds the control character {:?}",
            c
        )));
    }
    Ok(())
}

/// Checks that a name can serve as an SQL table name.
pub fn validate_slug(slug: &str) -> Result<(), DatasetError> {
    let ok = (1..=63).contains(&slug.len())
        && slug.starts_with(|c: char| c.is_ascii_lowercase())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DatasetError::InvalidMetadata(format!(
            "name `{slug}` must be 1-63 characters of a-z, 0-9 and _, starting with a letter"
        )))
    }
}
