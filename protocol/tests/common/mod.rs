//! Fixtures shared by the integration tests.
#![allow(dead_code, reason = "each test crate uses a part of it")]

use allmende_protocol::catalog::{CatalogEntry, EntryOp, PolicyRef, SignedCatalogEntry};
use allmende_protocol::dcat::{
    Agent, Checksum, ContactPoint, DatasetRecord, Distribution, Temporal,
};
use allmende_protocol::{Signed, SigningKey, peer_id_of};

/// The fixed key of the vectors: all bytes 7.
pub fn key7() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

/// Another fixed key.
pub fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32])
}

/// A complete DCAT-AP.de record.
pub fn dataset() -> DatasetRecord {
    DatasetRecord {
        id: "urn:uuid:7f1c2b1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b".into(),
        slug: "verkehrszaehlung_2024".into(),
        version: 1,
        title: "Verkehrszählung 2024".into(),
        description: "Stündliche Zählwerte der Dauerzählstellen im Kreisgebiet.".into(),
        publisher: Agent {
            name: "Kreis Musterland".into(),
            uri: Some("https://musterland.example/".into()),
        },
        contact_point: Some(ContactPoint {
            name: Some("Open-Data-Team".into()),
            email: Some("opendata@musterland.example".into()),
            url: None,
        }),
        themes: vec!["TRAN".into()],
        keywords: vec!["verkehr".into(), "zählung".into()],
        district_key: Some("05515".into()),
        temporal: Some(Temporal {
            start: Some("2024-01-01".into()),
            end: Some("2024-12-31".into()),
        }),
        spatial: None,
        issued: "2025-01-15T10:00:00Z".into(),
        modified: "2025-01-15T10:00:00Z".into(),
        license: Some("dl-by-de/2.0".into()),
        conforms_to: None,
        distributions: vec![Distribution {
            format: "PARQUET".into(),
            media_type: "application/vnd.apache.parquet".into(),
            byte_size: 123_456,
            checksum: Checksum {
                algorithm: "sha256".into(),
                value: "ab".repeat(32),
            },
            access_url: "allmende://dataset/verkehrszaehlung_2024/1".into(),
            license: Some("dl-by-de/2.0".into()),
        }],
    }
}

/// The first entry of key 7's chain, as used by the vectors.
pub fn entry1() -> CatalogEntry {
    CatalogEntry {
        publisher: peer_id_of(&key7().verifying_key()),
        seq: 1,
        prev: None,
        op: EntryOp::Create,
        dataset: dataset(),
        policy: Some(PolicyRef {
            id: [0x11; 32],
            uri: Some("https://musterland.example/policy/1".into()),
        }),
        issued: "2025-01-15T10:00:00Z".into(),
        columns: vec![],
    }
}

/// The entry that follows `prev` in its chain, signed by `signer`.
pub fn next(prev: &SignedCatalogEntry, signer: &SigningKey) -> SignedCatalogEntry {
    let mut e = prev.payload().clone();
    e.seq += 1;
    e.prev = Some(prev.hash());
    e.op = EntryOp::Update;
    e.dataset.version += 1;
    Signed::sign(&e, signer).unwrap()
}
