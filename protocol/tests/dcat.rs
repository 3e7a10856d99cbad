//! DCAT-AP.de record checks.

mod common;

use allmende_protocol::cbor;
use allmende_protocol::dcat::{
    ContactPoint, DatasetRecord, LICENSES, THEMES, district_uri, license_uri, theme_uri,
};

#[test]
fn complete_record_has_nothing_missing() {
    assert!(common::dataset().missing_mandatory().is_empty());
}

#[test]
fn empty_record_lists_every_mandatory_field() {
    assert_eq!(
        DatasetRecord::default().missing_mandatory(),
        [
            "dct:title",
            "dct:description",
            "dct:publisher",
            "dcat:contactPoint",
            "dcat:theme",
            "dct:license",
            "dcat:distribution",
        ]
    );
}

#[test]
fn blank_text_counts_as_missing() {
    let mut r = common::dataset();
    r.title = "  ".into();
    r.publisher.name = "\t".into();
    assert_eq!(r.missing_mandatory(), ["dct:title", "dct:publisher"]);
}

#[test]
fn contact_point_needs_email_or_url() {
    let mut r = common::dataset();
    r.contact_point = Some(ContactPoint {
        name: Some("Team".into()),
        email: None,
        url: None,
    });
    assert_eq!(r.missing_mandatory(), ["dcat:contactPoint"]);
    r.contact_point = Some(ContactPoint {
        name: None,
        email: None,
        url: Some("https://x".into()),
    });
    assert!(r.missing_mandatory().is_empty());
}

#[test]
fn vocabulary_values_are_checked() {
    let mut r = common::dataset();
    r.themes = vec!["TRAN".into(), "CARS".into()];
    r.license = Some("wtfpl".into());
    assert_eq!(
        r.missing_mandatory(),
        [
            "dcat:theme (`CARS` is not an EU data-theme code)",
            "dct:license (`wtfpl` is not in the DCAT-AP.de licence vocabulary)",
        ]
    );
}

#[test]
fn distribution_fields_are_checked() {
    let mut r = common::dataset();
    r.distributions.push(r.distributions[0].clone());
    r.distributions[1].access_url = String::new();
    r.distributions[1].format = " ".into();
    assert_eq!(
        r.missing_mandatory(),
        [
            "dcat:distribution[1].dcat:accessURL",
            "dcat:distribution[1].dct:format"
        ]
    );
}

#[test]
fn vocabulary_uris() {
    assert!(THEMES.contains(&"TRAN") && LICENSES.contains(&"dl-by-de/2.0"));
    assert_eq!(
        theme_uri("TRAN"),
        "http://publications.europa.eu/resource/authority/data-theme/TRAN"
    );
    assert_eq!(
        license_uri("cc-by/4.0"),
        "http://dcat-ap.de/def/licenses/cc-by/4.0"
    );
    assert_eq!(
        district_uri("05515"),
        "http://dcat-ap.de/def/politicalGeocoding/districtKey/05515"
    );
}

#[test]
fn record_round_trips_through_cbor_and_json() {
    let r = common::dataset();
    let bytes = cbor::to_vec(&r).unwrap();
    assert_eq!(
        cbor::from_slice::<DatasetRecord>(&bytes, 1 << 16).unwrap(),
        r
    );
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<DatasetRecord>(&json).unwrap(), r);
    // Optional fields that are None are omitted, defaults fill them back in.
    let min = DatasetRecord::default();
    let bytes = cbor::to_vec(&min).unwrap();
    assert_eq!(
        cbor::from_slice::<DatasetRecord>(&bytes, 1 << 16).unwrap(),
        min
    );
}
