//! Fuzz entry points for everything a node decodes from outside: the COSE envelope, every wire
//! message, the query fragment and plan, the roster, the policy parsers (JSON-LD and CBOR), the
//! importers and the SQL entry point.
//!
//! Each `pub fn <target>(data: &[u8])` must not panic on any input; where an invariant exists
//! (decode → encode → decode is stable, an envelope is rejected or verifies, an import is a typed
//! error or a consistent Parquet file) it asserts it, so a panic is a finding. The cargo-fuzz
//! binaries in `fuzz/` call these functions; `tests/replay.rs` replays the kept corpora through
//! them on the stable toolchain.
#![deny(missing_docs)]

pub mod audit;
pub mod envelope;
pub mod fragment;
#[cfg(feature = "data")]
pub mod import;
pub mod messages;
pub mod plan;
pub mod policy;
pub mod roster;
#[cfg(feature = "data")]
pub mod sql;
pub mod support;

pub use audit::audit;
pub use envelope::envelope;
pub use fragment::fragment;
#[cfg(feature = "data")]
pub use import::{import_csv, import_geojson, import_json};
pub use messages::messages;
pub use plan::plan;
pub use policy::{policy_cbor, policy_jsonld};
pub use roster::roster;
#[cfg(feature = "data")]
pub use sql::sql;

/// A target: its name (the directory of its corpus) and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    ("envelope", envelope),
    ("messages", messages),
    ("fragment", fragment),
    ("plan", plan),
    ("roster", roster),
    ("policy_jsonld", policy_jsonld),
    ("policy_cbor", policy_cbor),
    ("audit", audit),
    #[cfg(feature = "data")]
    ("import_csv", import_csv),
    #[cfg(feature = "data")]
    ("import_json", import_json),
    #[cfg(feature = "data")]
    ("import_geojson", import_geojson),
    #[cfg(feature = "data")]
    ("sql", sql),
];
