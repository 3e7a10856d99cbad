//! The swarm: QUIC with TCP + noise + yamux as fallback, an allow-list, connection limits,
//! identify, ping, Kademlia (server mode, peer routing), gossipsub (signed, strictly validated,
//! content-addressed, each message validated by the node before it is forwarded), the
//! catalog-sync and negotiation request-response protocols on a CBOR codec, raw streams
//! (federated queries, transfers) and mDNS for development.

use std::time::Duration;

use allmende_protocol::negotiate::{MAX_NEGOTIATE_BYTES, NegotiateRequest, NegotiateResponse};
use allmende_protocol::sync::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, SyncRequest, SyncResponse};
use allmende_protocol::version::{CATALOG_SYNC, KADEMLIA, NEGOTIATE};
use allmende_protocol::{MAX_ENVELOPE_BYTES, SigningKey};
use libp2p::swarm::{NetworkBehaviour, behaviour::toggle::Toggle};
use libp2p::{
    StreamProtocol, Swarm, allow_block_list, connection_limits, gossipsub, identify, kad, mdns,
    noise, ping, request_response, tcp, yamux,
};
use sha2::{Digest as _, Sha256};

use crate::NetworkError;
use crate::codec::CborCodec;

pub(crate) type SyncBehaviour = request_response::Behaviour<CborCodec<SyncRequest, SyncResponse>>;
pub(crate) type NegotiateBehaviour =
    request_response::Behaviour<CborCodec<NegotiateRequest, NegotiateResponse>>;

/// The node's network behaviour.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) gossip: gossipsub::Behaviour,
    pub(crate) sync: SyncBehaviour,
    pub(crate) negotiate: NegotiateBehaviour,
    pub(crate) stream: libp2p_stream::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Builds the swarm for the node's key.
pub(crate) fn build(
    key: &SigningKey,
    mdns_enabled: bool,
) -> Result<Swarm<Behaviour>, NetworkError> {
    let err = |e: &dyn std::fmt::Display| NetworkError::Build(e.to_string());
    let keypair =
        libp2p::identity::Keypair::ed25519_from_bytes(key.to_bytes()).map_err(|e| err(&e))?;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| err(&e))?
        .with_quic()
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let gossip_config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                .heartbeat_interval(Duration::from_millis(500))
                .max_transmit_size(MAX_ENVELOPE_BYTES + 64 * 1024)
                .message_id_fn(|m: &gossipsub::Message| {
                    gossipsub::MessageId::from(hex::encode(Sha256::digest(&m.data)))
                })
                .build()?;
            let gossip = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )?;
            let mut kad_config = kad::Config::new(StreamProtocol::new(KADEMLIA));
            kad_config.set_query_timeout(Duration::from_secs(10));
            // Bootstrapped from the roster when it changes, not on a timer before peers exist.
            kad_config.set_periodic_bootstrap_interval(None);
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad_config,
            );
            kad.set_mode(Some(kad::Mode::Server));
            let request_config =
                request_response::Config::default().with_request_timeout(Duration::from_secs(10));
            let sync = request_response::Behaviour::with_codec(
                CborCodec::new(MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES),
                [(
                    StreamProtocol::new(CATALOG_SYNC),
                    request_response::ProtocolSupport::Full,
                )],
                request_config.clone(),
            );
            let negotiate = request_response::Behaviour::with_codec(
                CborCodec::new(MAX_NEGOTIATE_BYTES, MAX_NEGOTIATE_BYTES),
                [(
                    StreamProtocol::new(NEGOTIATE),
                    request_response::ProtocolSupport::Full,
                )],
                request_config,
            );
            let mdns = if mdns_enabled {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    peer_id,
                )?)
            } else {
                None
            };
            Ok(Behaviour {
                allow: allow_block_list::Behaviour::default(),
                limits: connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_established_per_peer(Some(2))
                        .with_max_established(Some(500))
                        .with_max_pending_incoming(Some(64)),
                ),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/allmende/1".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
                kad,
                gossip,
                sync,
                negotiate,
                stream: libp2p_stream::Behaviour::new(),
                mdns: Toggle::from(mdns),
            })
        })
        .map_err(|e| err(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    Ok(swarm)
}
