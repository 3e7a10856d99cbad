//! The node's libp2p networking, as the rest of the node sees it: a cloneable [`Client`] whose
//! commands the [`EventLoop`] (the one task that owns the swarm) carries out, and the
//! [`Event`]s it hands back — gossip messages awaiting a verdict, members' requests awaiting an
//! answer, connections. It depends on the wire types ([`allmende_protocol`]) and nothing else of
//! the node: no storage, no policy, no SQL. Streams (federated queries, transfers) are framed
//! with [`frames`]; [`ratelimit`] and [`clock`] serve the protocols built on it.
//!
//! ```no_run
//! # async fn example(key: allmende_protocol::SigningKey) -> Result<(), allmende_p2p::NetworkError> {
//! let settings = allmende_p2p::Settings {
//!     listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".into()],
//!     mdns: false,
//!     gossip_rate: 200,
//!     redial: std::time::Duration::from_secs(5),
//! };
//! let (client, mut event_loop, mut events) = allmende_p2p::new(&key, &settings)?;
//! event_loop.listen()?;
//! tokio::spawn(event_loop.run());
//! while let Some(event) = events.recv().await {
//!     // judge gossip with `client.validated(..)`, answer requests with their responder
//! #   let _ = (&client, event);
//! }
//! # Ok(()) }
//! ```

mod behaviour;
mod client;
pub mod clock;
mod codec;
mod event_loop;
pub mod frames;
pub mod ratelimit;

pub use client::{Client, MemberAddrs, Responder, Topic, Verdict};
pub use event_loop::{Event, EventLoop, Settings, new};
pub use libp2p::gossipsub::MessageId;
pub use libp2p::{Multiaddr, Stream};

use allmende_protocol::PeerId;

/// Errors starting the network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The swarm could not be built.
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    /// A listen address could not be used.
    #[error("cannot listen on `{address}`: {message}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        message: String,
    },
}

/// Errors of a network operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum P2pError {
    /// The event loop has stopped.
    #[error("the network task has stopped")]
    Stopped,
    /// The peer is not a member of the federation.
    #[error("`{0}` is not a member of this node's federation")]
    NotMember(PeerId),
    /// The peer could not be reached (no connection; a dial or a stream failed).
    #[error("{0}")]
    Unreachable(String),
    /// A request failed (timeout, connection closed, refused by the protocol).
    #[error("the request failed: {0}")]
    Request(String),
    /// A protocol could not be used as asked.
    #[error("{0}")]
    Protocol(String),
}
