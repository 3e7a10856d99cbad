//! A node's data: imports of CSV, JSON/GeoJSON and Parquet files ([`import`]) into dataset
//! versions with their DCAT-AP.de records ([`datasets`], [`dcat`]), the DataFusion query engine
//! with its bounds and its own threads ([`sql`]), result encoders ([`output`]) and sample data
//! ([`sample`]). It knows the store ([`allmende_store`]) and the wire types
//! ([`allmende_protocol`]); it knows nothing of the network, policies or the HTTP API.

pub mod datasets;
pub mod dcat;
pub mod import;
pub mod output;
pub mod sample;
pub mod sql;
