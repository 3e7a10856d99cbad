//! DCAT-AP.de JSON-LD rendering of dataset records, with a pinned inline `@context`.

use allmende_protocol::dcat::{DatasetRecord, district_uri, license_uri, theme_uri};
use serde_json::{Value, json};

/// The JSON-LD context used for every document.
fn context() -> Value {
    json!({
        "dcat": "http://www.w3.org/ns/dcat#",
        "dct": "http://purl.org/dc/terms/",
        "dcatde": "http://dcat-ap.de/def/dcatde/",
        "foaf": "http://xmlns.com/foaf/0.1/",
        "vcard": "http://www.w3.org/2006/vcard/ns#",
        "spdx": "http://spdx.org/rdf/terms#",
        "owl": "http://www.w3.org/2002/07/owl#",
        "xsd": "http://www.w3.org/2001/XMLSchema#"
    })
}

fn id(uri: String) -> Value {
    json!({ "@id": uri })
}

fn date_time(v: &str) -> Value {
    json!({ "@value": v, "@type": "xsd:dateTime" })
}

fn date_or_time(v: &str) -> Value {
    let ty = if v.len() == 10 {
        "xsd:date"
    } else {
        "xsd:dateTime"
    };
    json!({ "@value": v, "@type": ty })
}

/// Renders a record as a DCAT-AP.de `dcat:Dataset` JSON-LD document. `base` is the node's
/// public URL, used for the dataset's IRI.
pub fn to_jsonld(record: &DatasetRecord, base: &str) -> Value {
    let dataset_iri = format!("{base}/api/v1/datasets/{}", record.id);
    let mut doc = json!({
        "@context": context(),
        "@id": dataset_iri,
        "@type": "dcat:Dataset",
        "dct:identifier": record.id,
        "dct:title": record.title,
        "dct:description": record.description,
        "owl:versionInfo": record.version.to_string(),
        "dct:issued": date_time(&record.issued),
        "dct:modified": date_time(&record.modified),
        "dcat:keyword": record.keywords,
        "dcat:theme": record.themes.iter().map(|t| id(theme_uri(t))).collect::<Vec<_>>(),
    });
    let mut publisher = json!({ "@type": "foaf:Agent", "foaf:name": record.publisher.name });
    if let Some(uri) = &record.publisher.uri {
        publisher["@id"] = json!(uri);
    }
    doc["dct:publisher"] = publisher;
    if let Some(c) = &record.contact_point {
        let mut v = json!({ "@type": "vcard:Organization" });
        if let Some(n) = &c.name {
            v["vcard:fn"] = json!(n);
        }
        if let Some(e) = &c.email {
            v["vcard:hasEmail"] = id(format!("mailto:{e}"));
        }
        if let Some(u) = &c.url {
            v["vcard:hasURL"] = id(u.clone());
        }
        doc["dcat:contactPoint"] = v;
    }
    if let Some(key) = &record.district_key {
        doc["dcatde:politicalGeocodingURI"] = id(district_uri(key));
        doc["dcatde:politicalGeocodingLevelURI"] =
            id("http://dcat-ap.de/def/politicalGeocodingLevel/administrativeDistrict".into());
    }
    if let Some(l) = &record.license {
        doc["dct:license"] = id(license_uri(l));
    }
    if let Some(t) = &record.temporal {
        let mut period = json!({ "@type": "dct:PeriodOfTime" });
        if let Some(s) = &t.start {
            period["dcat:startDate"] = date_or_time(s);
        }
        if let Some(e) = &t.end {
            period["dcat:endDate"] = date_or_time(e);
        }
        doc["dct:temporal"] = period;
    }
    if let Some(s) = &record.spatial {
        doc["dct:spatial"] = if s.starts_with("http://") || s.starts_with("https://") {
            id(s.clone())
        } else {
            json!({ "@type": "dct:Location", "dcat:geometry": s })
        };
    }
    if let Some(c) = &record.conforms_to {
        doc["dct:conformsTo"] = id(c.clone());
    }
    doc["dcat:distribution"] = record
        .distributions
        .iter()
        .map(|d| {
            let mut v = json!({
                "@type": "dcat:Distribution",
                "dct:format": id(format!(
                    "http://publications.europa.eu/resource/authority/file-type/{}", d.format
                )),
                "dcat:mediaType": d.media_type,
                "dcat:byteSize": { "@value": d.byte_size.to_string(), "@type": "xsd:nonNegativeInteger" },
                "dcat:accessURL": id(d.access_url.clone()),
                "spdx:checksum": {
                    "@type": "spdx:Checksum",
                    "spdx:algorithm": id(format!("http://spdx.org/rdf/terms#checksumAlgorithm_{}", d.checksum.algorithm)),
                    "spdx:checksumValue": d.checksum.value,
                },
            });
            if let Some(l) = &d.license {
                v["dct:license"] = id(license_uri(l));
            }
            v
        })
        .collect();
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmende_protocol::dcat::{Agent, Temporal};

    #[test]
    fn renders_the_mandatory_properties() {
        let record = DatasetRecord {
            id: "abc".into(),
            slug: "districts".into(),
            version: 2,
            title: "Kreise".into(),
            description: "Alle Kreise".into(),
            publisher: Agent {
                name: "Stadt Münster".into(),
                uri: None,
            },
            themes: vec!["REGI".into()],
            district_key: Some("05515".into()),
            license: Some("cc-by/4.0".into()),
            temporal: Some(Temporal {
                start: Some("2018-12-31".into()),
                end: None,
            }),
            issued: "2026-01-01T00:00:00Z".into(),
            modified: "2026-01-02T00:00:00Z".into(),
            ..DatasetRecord::default()
        };
        let doc = to_jsonld(&record, "http://127.0.0.1:7070");
        assert_eq!(doc["@type"], "dcat:Dataset");
        assert_eq!(
            doc["dcatde:politicalGeocodingURI"]["@id"],
            "http://dcat-ap.de/def/politicalGeocoding/districtKey/05515"
        );
        assert_eq!(
            doc["dct:license"]["@id"],
            "http://dcat-ap.de/def/licenses/cc-by/4.0"
        );
        assert_eq!(
            doc["dcat:theme"][0]["@id"],
            "http://publications.europa.eu/resource/authority/data-theme/REGI"
        );
        assert_eq!(doc["dct:temporal"]["dcat:startDate"]["@type"], "xsd:date");
        assert_eq!(doc["owl:versionInfo"], "2");
    }
}
