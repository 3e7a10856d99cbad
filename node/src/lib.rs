//! The Allmende node: a municipality's sovereign data-space node.
//!
//! This crate holds the `allmende` binary's library: the configuration ([`config`]), the node's
//! identity ([`identity`]), durable metadata ([`store`]) and datasets ([`datasets`], converted by
//! [`import`] and described by [`dcat`]), local SQL ([`sql`]), the HTTP API ([`api`]), the
//! command line ([`cli`]) with its API client ([`client`]), sample data ([`sample`]) and the
//! optional OpenTelemetry export of its spans ([`telemetry`]).
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod enforce;
pub mod federation;
pub mod identity;
pub mod metrics;
pub mod policies;
pub mod problem;
pub mod query;
pub mod server;
pub mod serving;

pub mod telemetry;
pub mod transfer;
