//! DCAT-AP.de dataset descriptions as they are stored and carried in catalog entries.
//!
//! The field names follow DCAT-AP.de 2.0 (`dct:title`, `dcat:theme`,
//! `dcatde:politicalGeocodingURI`, …). Vocabulary values are kept as their short codes
//! (`TRAN`, `cc-by/4.0`, `05515`); [`theme_uri`], [`license_uri`] and [`district_uri`] expand
//! them to the controlled-vocabulary URIs.

use serde::{Deserialize, Serialize};

/// Base of the EU data-theme vocabulary (`dcat:theme`).
pub const THEME_BASE: &str = "http://publications.europa.eu/resource/authority/data-theme/";
/// Base of the DCAT-AP.de licence vocabulary (`dct:license`).
pub const LICENSE_BASE: &str = "http://dcat-ap.de/def/licenses/";
/// Base of the DCAT-AP.de political geocoding URIs for district keys.
pub const DISTRICT_BASE: &str = "http://dcat-ap.de/def/politicalGeocoding/districtKey/";

/// The codes of the EU data-theme vocabulary.
pub const THEMES: &[&str] = &[
    "AGRI",
    "ECON",
    "EDUC",
    "ENER",
    "ENVI",
    "GOVE",
    "HEAL",
    "INTR",
    "JUST",
    "OP_DATPRO",
    "REGI",
    "SOCI",
    "TECH",
    "TRAN",
];

/// The identifiers of the DCAT-AP.de licence vocabulary (`http://dcat-ap.de/def/licenses/<id>`).
pub const LICENSES: &[&str] = &[
    "cc-by/4.0",
    "cc-by-sa/4.0",
    "cc-by-nd/4.0",
    "cc-by-nc/4.0",
    "cc-by-nc-sa/4.0",
    "cc-by-nc-nd/4.0",
    "cc-zero",
    "cc-pdm/1.0",
    "dl-by-de/2.0",
    "dl-zero-de/2.0",
    "odbl",
    "odc-by",
    "odc-pddl",
    "gfdl",
    "apache",
    "bsd",
    "gpl/3.0",
    "mit",
    "other-open",
    "other-opensource",
    "other-commercial",
    "other-closed",
    "other-freeware",
];

/// The URI of an EU data-theme code.
pub fn theme_uri(code: &str) -> String {
    format!("{THEME_BASE}{code}")
}

/// The URI of a DCAT-AP.de licence identifier.
pub fn license_uri(id: &str) -> String {
    format!("{LICENSE_BASE}{id}")
}

/// The `dcatde:politicalGeocodingURI` of a German district key (AGS).
pub fn district_uri(key: &str) -> String {
    format!("{DISTRICT_BASE}{key}")
}

/// An organisation or person (`foaf:Agent`), e.g. the publisher.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// `foaf:name`.
    pub name: String,
    /// The agent's URI, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// A contact point (`dcat:contactPoint`, a vCard).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPoint {
    /// `vcard:fn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `vcard:hasEmail`, without the `mailto:` prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `vcard:hasURL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A time span (`dct:temporal`, `dct:PeriodOfTime`), as ISO 8601 dates or date-times.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Temporal {
    /// `dcat:startDate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// `dcat:endDate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// A checksum (`spdx:checksum`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// The algorithm, e.g. `sha256`.
    pub algorithm: String,
    /// The value as lower-case hex.
    pub value: String,
}

/// A distribution of a dataset (`dcat:Distribution`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distribution {
    /// `dct:format`, a code of the EU file-type vocabulary such as `PARQUET`.
    pub format: String,
    /// `dcat:mediaType`, e.g. `application/vnd.apache.parquet`.
    pub media_type: String,
    /// `dcat:byteSize`.
    pub byte_size: u64,
    /// `spdx:checksum`.
    pub checksum: Checksum,
    /// `dcat:accessURL`.
    pub access_url: String,
    /// `dct:license`, a DCAT-AP.de licence identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

/// A DCAT-AP.de dataset description (`dcat:Dataset`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// The dataset's stable identifier (`dct:identifier`); kept across versions.
    pub id: String,
    /// The dataset's short name, also its SQL table name.
    pub slug: String,
    /// The version, starting at 1 (`owl:versionInfo`).
    pub version: u64,
    /// `dct:title`.
    pub title: String,
    /// `dct:description`.
    pub description: String,
    /// `dct:publisher`.
    pub publisher: Agent,
    /// `dcat:contactPoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_point: Option<ContactPoint>,
    /// `dcat:theme`, as EU data-theme codes.
    #[serde(default)]
    pub themes: Vec<String>,
    /// `dcat:keyword`.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// `dcatde:politicalGeocodingURI`, as the district key (AGS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district_key: Option<String>,
    /// `dct:temporal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal: Option<Temporal>,
    /// `dct:spatial`, a URI or a GeoJSON geometry as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spatial: Option<String>,
    /// `dct:issued`, RFC 3339.
    pub issued: String,
    /// `dct:modified`, RFC 3339.
    pub modified: String,
    /// `dct:license` of the dataset, a DCAT-AP.de licence identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// `dct:conformsTo`: the common schema the dataset follows, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conforms_to: Option<String>,
    /// `dcat:distribution`.
    #[serde(default)]
    pub distributions: Vec<Distribution>,
}

impl DatasetRecord {
    /// The mandatory DCAT-AP.de fields that are missing or invalid, named by their property.
    ///
    /// An empty list means the record may be published.
    pub fn missing_mandatory(&self) -> Vec<String> {
        let mut missing = Vec::new();
        let blank = |s: &str| s.trim().is_empty();
        if blank(&self.title) {
            missing.push("dct:title".to_owned());
        }
        if blank(&self.description) {
            missing.push("dct:description".to_owned());
        }
        if blank(&self.publisher.name) {
            missing.push("dct:publisher".to_owned());
        }
        let contact = self.contact_point.as_ref();
        if contact.is_none_or(|c| c.email.is_none() && c.url.is_none()) {
            missing.push("dcat:contactPoint".to_owned());
        }
        if self.themes.is_empty() {
            missing.push("dcat:theme".to_owned());
        }
        for theme in &self.themes {
            if !THEMES.contains(&theme.as_str()) {
                missing.push(format!(
                    "dcat:theme (`{theme}` is not an EU data-theme code)"
                ));
            }
        }
        match self.license.as_deref() {
            None => missing.push("dct:license".to_owned()),
            Some(id) if !LICENSES.contains(&id) => missing.push(format!(
                "dct:license (`{id}` is not in the DCAT-AP.de licence vocabulary)"
            )),
            Some(_) => {}
        }
        if self.distributions.is_empty() {
            missing.push("dcat:distribution".to_owned());
        }
        for (i, d) in self.distributions.iter().enumerate() {
            if blank(&d.access_url) {
                missing.push(format!("dcat:distribution[{i}].dcat:accessURL"));
            }
            if blank(&d.format) {
                missing.push(format!("dcat:distribution[{i}].dct:format"));
            }
        }
        missing
    }
}
