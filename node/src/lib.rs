//! The Allmende node: a municipality's sovereign data-space node, as a library the `allmende`
//! binary runs. Its configuration ([`config`]) and identity ([`identity`]); the regional
//! federation ([`federation`]) over the network of `allmende_p2p`; usage policies, agreements
//! and the audit log ([`policies`]) and the one decision on every remote request
//! ([`enforce`]), with what serving a member needs ([`serving`]); federated queries ([`query`])
//! and whole-dataset transfers ([`transfer`]); the HTTP API ([`api`]) with its problem
//! documents ([`problem`]) and authentication ([`auth`]); metrics ([`metrics`]) and the
//! optional OpenTelemetry export of its spans ([`telemetry`]); and [`server`], which opens a
//! data dir and serves it. Datasets, imports and local SQL are `allmende_data`; the store is
//! `allmende_store`.
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod config;
pub mod dsp;
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
