//! The libp2p swarm, owned by one task: QUIC with TCP + noise + yamux as fallback, an allow-list
//! fed by the roster, identify, ping, Kademlia (server mode, peer routing), gossipsub (signed,
//! strictly validated, content-addressed, application-validated before forwarding) and the
//! catalog-sync request-response protocol on a CBOR codec.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allmende_protocol::negotiate::{MAX_NEGOTIATE_BYTES, NegotiateRequest, NegotiateResponse};
use allmende_protocol::roster::SignedRoster;
use allmende_protocol::sync::{
    Digest, MAX_RANGE_ENTRIES, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, SyncRequest, SyncResponse,
};
use allmende_protocol::version::{
    CATALOG_SYNC, KADEMLIA, NEGOTIATE, catalog_topic, revocation_topic, roster_topic,
};
use allmende_protocol::{MAX_ENVELOPE_BYTES, PeerId, Signed, SigningKey};
use futures::StreamExt;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle};
use libp2p::{
    Multiaddr, StreamProtocol, Swarm, allow_block_list, connection_limits, gossipsub, identify,
    kad, mdns, noise, ping, request_response, tcp, yamux,
};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::codec::CborCodec;
use super::ratelimit::RateLimiter;
use super::{Command, Federation, Handle, Outcome, Rejection};
use crate::config::P2pConfig;
use crate::policies::Policies;

/// Errors starting the network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The swarm could not be built.
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    /// No listen address could be bound.
    #[error("cannot listen on `{address}`: {message}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        message: String,
    },
}

type SyncBehaviour = request_response::Behaviour<CborCodec<SyncRequest, SyncResponse>>;
type NegotiateBehaviour =
    request_response::Behaviour<CborCodec<NegotiateRequest, NegotiateResponse>>;

#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossip: gossipsub::Behaviour,
    sync: SyncBehaviour,
    negotiate: NegotiateBehaviour,
    stream: libp2p_stream::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

fn build_swarm(key: &SigningKey, config: &P2pConfig) -> Result<Swarm<Behaviour>, NetworkError> {
    let err = |e: &dyn std::fmt::Display| NetworkError::Build(e.to_string());
    let keypair =
        libp2p::identity::Keypair::ed25519_from_bytes(key.to_bytes()).map_err(|e| err(&e))?;
    let mdns_enabled = config.mdns;
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
            let sync = request_response::Behaviour::with_codec(
                CborCodec::new(MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES),
                [(
                    StreamProtocol::new(CATALOG_SYNC),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            );
            let negotiate = request_response::Behaviour::with_codec(
                CborCodec::new(MAX_NEGOTIATE_BYTES, MAX_NEGOTIATE_BYTES),
                [(
                    StreamProtocol::new(NEGOTIATE),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
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

/// Builds the swarm, listens, and runs it in a task; the federation gets the [`Handle`].
pub fn spawn(
    fed: Arc<Federation>,
    policies: Arc<Policies>,
    key: &SigningKey,
    config: &P2pConfig,
) -> Result<tokio::task::JoinHandle<()>, NetworkError> {
    let mut swarm = build_swarm(key, config)?;
    for address in &config.listen {
        let addr: Multiaddr =
            address
                .parse()
                .map_err(|e: libp2p::multiaddr::Error| NetworkError::Listen {
                    address: address.clone(),
                    message: e.to_string(),
                })?;
        swarm.listen_on(addr).map_err(|e| NetworkError::Listen {
            address: address.clone(),
            message: e.to_string(),
        })?;
    }
    let (tx, rx) = mpsc::channel(1024);
    fed.set_handle(Handle { tx });
    fed.set_streams(swarm.behaviour().stream.new_control());
    let network = Network {
        swarm,
        fed,
        policies,
        rx,
        negotiations: HashMap::new(),
        gossip_limit: RateLimiter::new(config.gossip_rate, config.gossip_rate.saturating_mul(10)),
        sync_limit: RateLimiter::new(50, 500),
        allowed: HashSet::new(),
        federation: None,
        in_flight: HashSet::new(),
        listen: Vec::new(),
        sync_interval: Duration::from_millis(config.sync_interval_ms),
    };
    Ok(tokio::spawn(network.run()))
}

struct Network {
    swarm: Swarm<Behaviour>,
    fed: Arc<Federation>,
    policies: Arc<Policies>,
    rx: mpsc::Receiver<Command>,
    /// Negotiations this node started, by request id.
    negotiations: HashMap<
        request_response::OutboundRequestId,
        oneshot::Sender<Result<NegotiateResponse, String>>,
    >,
    gossip_limit: RateLimiter,
    sync_limit: RateLimiter,
    /// Peers on the allow-list.
    allowed: HashSet<PeerId>,
    /// The federation whose topics we are subscribed to.
    federation: Option<String>,
    /// Range requests in flight, by (peer, publisher), so one gap is fetched once.
    in_flight: HashSet<(PeerId, PeerId)>,
    listen: Vec<Multiaddr>,
    sync_interval: Duration,
}

impl Network {
    async fn run(mut self) {
        self.roster_changed();
        let mut tick = tokio::time::interval(self.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.rx.recv() => match command {
                    Some(c) => self.command(c),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.event(event),
                _ = tick.tick() => {
                    self.dial_members();
                    self.sync_round();
                    if let Err(e) = self.policies.checkpoint() {
                        tracing::error!(error = %e, "audit checkpoint failed");
                    }
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Announce(bytes) => self.publish(Topic::Catalog, bytes),
            Command::Propose(bytes) => self.publish(Topic::Roster, bytes),
            Command::Revoke(bytes) => self.publish(Topic::Revocation, bytes),
            Command::Negotiate {
                peer,
                request,
                reply,
            } => {
                if !self.allowed.contains(&peer) {
                    let _ = reply.send(Err(format!(
                        "`{peer}` is not a member of this node's federation"
                    )));
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .negotiate
                    .send_request(&peer, request);
                self.negotiations.insert(id, reply);
            }
            Command::RosterChanged => self.roster_changed(),
        }
    }

    fn publish(&mut self, topic: Topic, bytes: Vec<u8>) {
        let Some(federation) = &self.federation else {
            return;
        };
        let topic = match topic {
            Topic::Catalog => catalog_topic(federation),
            Topic::Roster => roster_topic(federation),
            Topic::Revocation => revocation_topic(federation),
        };
        match self
            .swarm
            .behaviour_mut()
            .gossip
            .publish(gossipsub::IdentTopic::new(topic), bytes)
        {
            Ok(_) => {}
            // Nobody to tell right now: anti-entropy delivers it when peers connect.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => tracing::warn!(error = %e, "gossip publish failed"),
        }
    }

    /// Applies the current roster to the allow-list, subscriptions, Kademlia and dials.
    fn roster_changed(&mut self) {
        let roster = self.fed.roster();
        let me = self.fed.peer_id();
        let members: HashSet<PeerId> = roster
            .iter()
            .flat_map(|r| r.members.iter().map(|m| m.peer_id))
            .filter(|p| *p != me)
            .collect();
        let behaviour = self.swarm.behaviour_mut();
        for gone in self.allowed.difference(&members) {
            // Closes any connection to a removed member.
            behaviour.allow.disallow_peer(*gone);
            behaviour.kad.remove_peer(gone);
            self.gossip_limit.remove(gone);
            self.fed.peer_gone(gone);
        }
        for member in &members {
            behaviour.allow.allow_peer(*member);
        }
        self.allowed = members;
        let federation = roster.as_ref().map(|r| r.federation.clone());
        if federation != self.federation {
            if let Some(old) = &self.federation {
                for t in [catalog_topic(old), roster_topic(old), revocation_topic(old)] {
                    behaviour.gossip.unsubscribe(&gossipsub::IdentTopic::new(t));
                }
            }
            if let Some(new) = &federation {
                for t in [catalog_topic(new), roster_topic(new), revocation_topic(new)] {
                    if let Err(e) = behaviour.gossip.subscribe(&gossipsub::IdentTopic::new(t)) {
                        tracing::error!(error = %e, "cannot subscribe to the federation's topics");
                    }
                }
            }
            self.federation = federation;
        }
        if let Some(r) = &roster {
            for m in r.members.iter().filter(|m| m.peer_id != me) {
                for a in m
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<Multiaddr>().ok())
                {
                    self.swarm.behaviour_mut().kad.add_address(&m.peer_id, a);
                }
            }
        }
        if !self.allowed.is_empty() {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
        self.dial_members();
    }

    fn dial_members(&mut self) {
        let Some(roster) = self.fed.roster() else {
            return;
        };
        let me = self.fed.peer_id();
        for m in roster.members.iter().filter(|m| m.peer_id != me) {
            if self.swarm.is_connected(&m.peer_id) {
                continue;
            }
            let addrs: Vec<Multiaddr> = m.addresses.iter().filter_map(|a| a.parse().ok()).collect();
            let opts = DialOpts::peer_id(m.peer_id)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(peer = %m.peer_id, error = %e, "dial failed");
            }
        }
    }

    /// One anti-entropy round with a random connected member.
    fn sync_round(&mut self) {
        let connected: Vec<PeerId> = self
            .allowed
            .iter()
            .filter(|p| self.swarm.is_connected(p))
            .copied()
            .collect();
        if connected.is_empty() {
            return;
        }
        let pick = connected[rand_index(connected.len())];
        self.send_digest(pick);
        self.ask_cosignature(pick);
    }

    /// Asks `witness` to cosign this node's latest audit checkpoint, if it has not yet.
    fn ask_cosignature(&mut self, witness: PeerId) {
        match self.policies.cosign_request(&witness) {
            Ok(Some(c)) => {
                let request = SyncRequest::Cosign {
                    checkpoint: serde_bytes::ByteBuf::from(c.checkpoint),
                    from: c.from,
                    proof: c
                        .proof
                        .iter()
                        .map(|h| serde_bytes::ByteBuf::from(h.to_vec()))
                        .collect(),
                };
                self.swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&witness, request);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot prepare a checkpoint for cosigning"),
        }
    }

    fn send_digest(&mut self, peer: PeerId) {
        match self.fed.log().digest(self.fed.roster_version()) {
            Ok(d) => {
                self.swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&peer, SyncRequest::Digest(d));
            }
            Err(e) => tracing::error!(error = %e, "cannot compute the digest"),
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "p2p listening");
                self.listen.push(address);
                self.update_listen();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen.retain(|a| *a != address);
                self.update_listen();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                self.fed
                    .peer_seen(peer_id, Some(endpoint.get_remote_address().to_string()));
                if num_established.get() == 1 && self.allowed.contains(&peer_id) {
                    tracing::info!(peer = %peer_id, "member connected");
                    self.send_digest(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::info!(peer = %peer_id, "member disconnected");
                self.fed.peer_gone(&peer_id);
                self.in_flight.retain(|(p, _)| *p != peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.gossip_message(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.sync_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Negotiate(e)) => self.negotiate_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                self.fed.peer_seen(peer_id, None);
                if self.allowed.contains(&peer_id) {
                    for a in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    if self.allowed.contains(&peer) && !self.swarm.is_connected(&peer) {
                        let _ = self
                            .swarm
                            .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                tracing::debug!(%send_back_addr, %error, "incoming connection refused");
            }
            _ => {}
        }
    }

    fn update_listen(&self) {
        let addrs = self
            .listen
            .iter()
            .filter(|a| {
                !a.iter().any(
                    |p| matches!(p, libp2p::multiaddr::Protocol::Ip4(ip) if ip.is_unspecified()),
                )
            })
            .map(ToString::to_string)
            .collect();
        self.fed.set_listen_addrs(addrs);
    }

    fn gossip_message(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let span = tracing::debug_span!("gossip", %source, topic = %message.topic);
        let _enter = span.enter();
        self.fed.peer_seen(source, None);
        let acceptance =
            if !self.gossip_limit.allow(source, Instant::now()) {
                tracing::warn!(%source, "gossip rate limit exceeded; message dropped");
                gossipsub::MessageAcceptance::Ignore
            } else if self.federation.as_ref().is_some_and(|f| {
                message.topic == gossipsub::IdentTopic::new(roster_topic(f)).hash()
            }) {
                self.roster_message(&message.data)
            } else if self.federation.as_ref().is_some_and(|f| {
                message.topic == gossipsub::IdentTopic::new(revocation_topic(f)).hash()
            }) {
                self.revocation_message(&message.data)
            } else {
                self.catalog_message(source, &message.data)
            };
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&id, &source, acceptance);
    }

    fn roster_message(&mut self, data: &[u8]) -> gossipsub::MessageAcceptance {
        match SignedRoster::from_bytes(data) {
            Ok(proposal) => {
                if proposal.roster().version <= self.fed.roster_version() {
                    return gossipsub::MessageAcceptance::Ignore;
                }
                match self.fed.receive_roster(proposal) {
                    Ok(true) => self.roster_changed(),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "roster proposal not kept"),
                }
                gossipsub::MessageAcceptance::Accept
            }
            Err(e) => {
                tracing::warn!(error = %e, "invalid roster proposal rejected");
                gossipsub::MessageAcceptance::Reject
            }
        }
    }

    fn revocation_message(&mut self, data: &[u8]) -> gossipsub::MessageAcceptance {
        match Signed::<allmende_policy::Revocation>::from_bytes(data, MAX_ENVELOPE_BYTES) {
            Ok(statement) => match self.policies.keep_revocation(&statement) {
                Ok(()) => gossipsub::MessageAcceptance::Accept,
                Err(e) => {
                    tracing::error!(error = %e, "storing a revocation failed");
                    gossipsub::MessageAcceptance::Ignore
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "invalid revocation rejected");
                gossipsub::MessageAcceptance::Reject
            }
        }
    }

    fn negotiate_event(
        &mut self,
        event: request_response::Event<NegotiateRequest, NegotiateResponse>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let span = tracing::info_span!("negotiate", %peer);
                    let _enter = span.enter();
                    let response = self.negotiate_answer(peer, request);
                    if self
                        .swarm
                        .behaviour_mut()
                        .negotiate
                        .send_response(channel, response)
                        .is_err()
                    {
                        tracing::debug!(%peer, "negotiation response could not be sent");
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.negotiations.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.negotiations.remove(&request_id) {
                    let _ = reply.send(Err(format!("negotiation failed: {error}")));
                }
            }
            _ => {}
        }
    }

    fn negotiate_answer(&mut self, peer: PeerId, request: NegotiateRequest) -> NegotiateResponse {
        if !self.allowed.contains(&peer) {
            return NegotiateResponse::Refused("not a member".into());
        }
        if !self.sync_limit.allow(peer, Instant::now()) {
            return NegotiateResponse::Refused("rate limited".into());
        }
        match request {
            NegotiateRequest::Offer { dataset } => match self.policies.get(&dataset) {
                Ok(Some(offer)) => {
                    NegotiateResponse::Offer(serde_bytes::ByteBuf::from(offer.to_bytes()))
                }
                Ok(None) => {
                    NegotiateResponse::Refused(format!("dataset `{dataset}` has no policy"))
                }
                Err(e) => NegotiateResponse::Refused(format!("store error: {e}")),
            },
            NegotiateRequest::Agree { dataset, request } => {
                match self.policies.conclude(peer, &dataset, &request) {
                    Ok(agreement) => NegotiateResponse::Agreement(serde_bytes::ByteBuf::from(
                        agreement.to_bytes(),
                    )),
                    Err(e) => NegotiateResponse::Refused(e.to_string()),
                }
            }
        }
    }

    fn catalog_message(&mut self, source: PeerId, data: &[u8]) -> gossipsub::MessageAcceptance {
        match self.fed.offer(data) {
            Ok(Outcome::Applied(entry)) => {
                tracing::debug!(publisher = %entry.payload().publisher, seq = entry.payload().seq, "entry applied");
                gossipsub::MessageAcceptance::Accept
            }
            Ok(Outcome::Duplicate) => gossipsub::MessageAcceptance::Ignore,
            Ok(Outcome::Gap { publisher, have }) => {
                tracing::debug!(%publisher, have, "gap; syncing with the sender");
                self.request_range(source, publisher, have + 1, MAX_RANGE_ENTRIES);
                gossipsub::MessageAcceptance::Accept
            }
            Err(Rejection::Store(e)) => {
                tracing::error!(error = %e, "store failed while applying an entry");
                gossipsub::MessageAcceptance::Ignore
            }
            Err(e) => {
                tracing::warn!(%source, error = %e, "catalog entry rejected");
                gossipsub::MessageAcceptance::Reject
            }
        }
    }

    fn request_range(&mut self, peer: PeerId, publisher: PeerId, from: u64, limit: u32) {
        if self.in_flight.insert((peer, publisher)) {
            self.swarm.behaviour_mut().sync.send_request(
                &peer,
                SyncRequest::Range {
                    publisher,
                    from,
                    limit,
                },
            );
        }
    }

    /// Asks `peer` for whatever its digest shows it has and this node lacks.
    fn pull_missing(&mut self, peer: PeerId, theirs: &Digest) {
        let Some(roster) = self.fed.roster() else {
            return;
        };
        let ours = match self.fed.log().digest(0) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot compute the digest");
                return;
            }
        };
        for head in theirs
            .heads
            .iter()
            .filter(|h| roster.contains(&h.publisher))
        {
            let mine = ours.heads.iter().find(|h| h.publisher == head.publisher);
            let have = mine.map_or(0, |h| h.seq);
            if head.seq > have {
                self.request_range(peer, head.publisher, have + 1, MAX_RANGE_ENTRIES);
            } else if head.seq == have && mine.is_some_and(|m| m.hash != head.hash) {
                // Two different entries with one seq: fetch theirs as evidence.
                self.request_range(peer, head.publisher, head.seq, 1);
            }
        }
    }

    fn sync_event(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let span = tracing::debug_span!("sync_request", %peer);
                    let response = {
                        let _enter = span.enter();
                        self.answer(peer, request)
                    };
                    if self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, response)
                        .is_err()
                    {
                        tracing::debug!(%peer, "sync response could not be sent");
                    }
                }
                request_response::Message::Response { response, .. } => {
                    let span = tracing::debug_span!("sync_response", %peer);
                    let _enter = span.enter();
                    self.fed.peer_seen(peer, None);
                    self.on_response(peer, response);
                }
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "sync request failed");
                self.in_flight.retain(|(p, _)| *p != peer);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound sync failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn answer(&mut self, peer: PeerId, request: SyncRequest) -> SyncResponse {
        if !self.allowed.contains(&peer) {
            return SyncResponse::Refused("not a member".into());
        }
        if !self.sync_limit.allow(peer, Instant::now()) {
            tracing::warn!(%peer, "sync rate limit exceeded");
            return SyncResponse::Refused("rate limited".into());
        }
        self.fed.peer_seen(peer, None);
        match request {
            SyncRequest::Cosign {
                checkpoint,
                from,
                proof,
            } => {
                let proof: Option<Vec<[u8; 32]>> =
                    proof.iter().map(|h| h.as_slice().try_into().ok()).collect();
                let Some(proof) = proof.filter(|p| p.len() <= 64) else {
                    return SyncResponse::Refused("malformed consistency proof".into());
                };
                match self.policies.witness(&peer, &checkpoint, from, &proof) {
                    Ok(c) => SyncResponse::Cosignature(serde_bytes::ByteBuf::from(c.to_bytes())),
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "refused to cosign a checkpoint");
                        SyncResponse::Refused(e.to_string())
                    }
                }
            }
            SyncRequest::Digest(theirs) => {
                let ours = match self.fed.log().digest(self.fed.roster_version()) {
                    Ok(d) => d,
                    Err(e) => return SyncResponse::Refused(format!("store error: {e}")),
                };
                let roster = (theirs.roster_version < ours.roster_version)
                    .then(|| self.fed.signed_roster())
                    .flatten()
                    .and_then(|r| r.to_bytes().ok())
                    .map(serde_bytes::ByteBuf::from);
                self.pull_missing(peer, &theirs);
                SyncResponse::Digest {
                    digest: ours,
                    roster,
                }
            }
            SyncRequest::Range {
                publisher,
                from,
                limit,
            } => {
                let limit = limit.min(MAX_RANGE_ENTRIES);
                match self.fed.log().range(&publisher, from.max(1), limit) {
                    Ok(entries) => {
                        let mut total = 0usize;
                        let out = entries
                            .into_iter()
                            .take_while(|e| {
                                total += e.bytes.len() + 16;
                                total < MAX_RESPONSE_BYTES - 4096
                            })
                            .map(|e| e.bytes)
                            .collect();
                        SyncResponse::Entries(out)
                    }
                    Err(e) => SyncResponse::Refused(format!("store error: {e}")),
                }
            }
        }
    }

    fn on_response(&mut self, peer: PeerId, response: SyncResponse) {
        match response {
            SyncResponse::Cosignature(bytes) => {
                if let Err(e) = self.policies.keep_cosignature(&peer, &bytes) {
                    tracing::warn!(%peer, error = %e, "cosignature not kept");
                }
            }
            SyncResponse::Digest { digest, roster } => {
                if let Some(bytes) = roster {
                    match SignedRoster::from_bytes(&bytes) {
                        Ok(r) => match self.fed.receive_roster(r) {
                            Ok(true) => self.roster_changed(),
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(%peer, error = %e, "roster from sync not accepted")
                            }
                        },
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "invalid roster in sync response")
                        }
                    }
                }
                self.pull_missing(peer, &digest);
            }
            SyncResponse::Entries(entries) => {
                let count = entries.len();
                let mut publisher = None;
                for bytes in entries.iter().take(MAX_RANGE_ENTRIES as usize) {
                    match self.fed.offer(bytes) {
                        Ok(Outcome::Applied(e)) => publisher = Some(e.payload().publisher),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "entry from sync rejected");
                            break;
                        }
                    }
                }
                self.in_flight
                    .retain(|(p, _)| *p != peer || publisher.is_none());
                if let Some(p) = publisher {
                    self.in_flight.remove(&(peer, p));
                    if count == MAX_RANGE_ENTRIES as usize {
                        let have = self
                            .fed
                            .log()
                            .digest(0)
                            .ok()
                            .and_then(|d| d.heads.into_iter().find(|h| h.publisher == p))
                            .map_or(0, |h| h.seq);
                        self.request_range(peer, p, have + 1, MAX_RANGE_ENTRIES);
                    }
                } else {
                    self.in_flight.retain(|(p, _)| *p != peer);
                }
            }
            SyncResponse::Refused(reason) => {
                tracing::debug!(%peer, %reason, "sync request refused");
                self.in_flight.retain(|(p, _)| *p != peer);
            }
        }
    }
}

/// The gossip topics of a federation.
enum Topic {
    Catalog,
    Roster,
    Revocation,
}

fn rand_index(n: usize) -> usize {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) % n as u64) as usize
}
