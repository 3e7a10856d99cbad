//! The one task that owns the swarm. It carries out the [`Client`]'s commands and turns swarm
//! events into [`Event`]s for the node; it keeps only network state (the allow-list, the
//! subscribed federation, requests in flight, per-peer rate limits) and does no storage or
//! policy work: gossip messages wait for the node's verdict, inbound requests for its answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use allmende_protocol::negotiate::{NegotiateRequest, NegotiateResponse};
use allmende_protocol::sync::{SyncRequest, SyncResponse};
use allmende_protocol::version::{catalog_topic, revocation_topic, roster_topic};
use allmende_protocol::{PeerId, SigningKey};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, Swarm, gossipsub, identify, mdns, request_response};
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::{self, Behaviour, BehaviourEvent};
use crate::client::{Command, MemberAddrs, Responder, Topic, Verdict};
use crate::ratelimit::RateLimiter;
use crate::{Client, NetworkError, P2pError};

/// How the network is set up.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Multiaddresses to listen on.
    pub listen: Vec<String>,
    /// Discover peers on the local network with mDNS (development only).
    pub mdns: bool,
    /// Gossip messages accepted per second from one peer (bursts of ten times as many).
    pub gossip_rate: u32,
    /// How often members not connected are dialled again.
    pub redial: Duration,
}

/// What the network hands the node.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A gossip message from a member, to be judged with [`Client::validated`] before it is
    /// forwarded.
    Gossip {
        /// Its topic.
        topic: Topic,
        /// The peer it came through.
        source: PeerId,
        /// Its id, for the verdict.
        id: gossipsub::MessageId,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A member's catalog-sync request.
    Sync {
        /// Who asks.
        peer: PeerId,
        /// The request.
        request: SyncRequest,
        /// Where the answer goes.
        responder: Responder<SyncResponse>,
    },
    /// A member's negotiation request.
    Negotiate {
        /// Who asks.
        peer: PeerId,
        /// The request.
        request: NegotiateRequest,
        /// Where the answer goes.
        responder: Responder<NegotiateResponse>,
    },
    /// A connection to a member opened.
    Connected {
        /// The member.
        peer: PeerId,
        /// Its remote address.
        address: String,
        /// Whether it is the first connection to it.
        first: bool,
    },
    /// The last connection to a peer closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// Something was heard from a peer (identify).
    Seen {
        /// The peer.
        peer: PeerId,
    },
    /// The addresses this node listens on changed (unspecified addresses left out).
    ListenAddrs(Vec<String>),
}

/// Inbound requests accepted per second from one member (bursts of ten times as many).
const REQUEST_RATE: u32 = 50;

/// Callers waiting for the responses to their outbound requests of one protocol.
type Pending<Resp> =
    HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<Resp, P2pError>>>;

/// The swarm's task.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    /// For the responders handed out with inbound requests.
    own: mpsc::Sender<Command>,
    events: mpsc::Sender<Event>,
    syncs: Pending<SyncResponse>,
    negotiations: Pending<NegotiateResponse>,
    gossip_limit: RateLimiter,
    request_limit: RateLimiter,
    members: HashMap<PeerId, Vec<Multiaddr>>,
    federation: Option<String>,
    listen: Vec<Multiaddr>,
    listen_on: Vec<String>,
    redial: Duration,
}

/// Builds the swarm; returns the client, the event loop (to be started by the caller with
/// [`EventLoop::listen`] and `tokio::spawn(event_loop.run())`) and the node's end of the
/// events. The client may be used at once: its commands wait until the loop runs.
pub fn new(
    key: &SigningKey,
    settings: &Settings,
) -> Result<(Client, EventLoop, mpsc::Receiver<Event>), NetworkError> {
    let swarm = behaviour::build(key, settings.mdns)?;
    let (tx, commands) = mpsc::channel(1024);
    let (events_tx, events) = mpsc::channel(1024);
    let client = Client {
        tx: tx.clone(),
        streams: swarm.behaviour().stream.new_control(),
    };
    let event_loop = EventLoop {
        swarm,
        commands,
        own: tx,
        events: events_tx,
        syncs: HashMap::new(),
        negotiations: HashMap::new(),
        gossip_limit: RateLimiter::new(
            settings.gossip_rate,
            settings.gossip_rate.saturating_mul(10),
        ),
        request_limit: RateLimiter::new(REQUEST_RATE, REQUEST_RATE * 10),
        members: HashMap::new(),
        federation: None,
        listen: Vec::new(),
        listen_on: settings.listen.clone(),
        redial: settings.redial,
    };
    Ok((client, event_loop, events))
}

fn topic_name(topic: Topic, federation: &str) -> String {
    match topic {
        Topic::Catalog => catalog_topic(federation),
        Topic::Roster => roster_topic(federation),
        Topic::Revocation => revocation_topic(federation),
    }
}

impl EventLoop {
    /// Starts listening on the addresses of the [`Settings`] (needs the tokio runtime).
    pub fn listen(&mut self) -> Result<(), NetworkError> {
        for address in &self.listen_on {
            let addr: Multiaddr =
                address
                    .parse()
                    .map_err(|e: libp2p::multiaddr::Error| NetworkError::Listen {
                        address: address.clone(),
                        message: e.to_string(),
                    })?;
            self.swarm
                .listen_on(addr)
                .map_err(|e| NetworkError::Listen {
                    address: address.clone(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Runs until the task is aborted (its own responders keep the command channel open).
    pub async fn run(mut self) {
        let mut redial = tokio::time::interval(self.redial);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(c) => self.command(c),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.event(event),
                _ = redial.tick() => self.dial_members(),
            }
        }
    }

    /// Hands `event` to the node; a node that cannot keep up loses it (and is told for
    /// requests, which are refused).
    fn hand(&mut self, event: Event) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                tracing::warn!("the node is not keeping up with the network; an event is dropped");
                self.refuse(event, "the node is busy");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Answers an event the node will not see: a request with a refusal, a gossip message
    /// with `Ignore`.
    fn refuse(&mut self, event: Event, reason: &str) {
        let behaviour = self.swarm.behaviour_mut();
        match event {
            Event::Sync { responder, .. } => {
                let _ = behaviour
                    .sync
                    .send_response(responder.channel, SyncResponse::Refused(reason.into()));
            }
            Event::Negotiate { responder, .. } => {
                let _ = behaviour
                    .negotiate
                    .send_response(responder.channel, NegotiateResponse::Refused(reason.into()));
            }
            Event::Gossip { id, source, .. } => {
                behaviour.gossip.report_message_validation_result(
                    &id,
                    &source,
                    gossipsub::MessageAcceptance::Ignore,
                );
            }
            _ => {}
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data } => self.publish(topic, data),
            Command::Validated {
                id,
                source,
                verdict,
            } => {
                let acceptance = match verdict {
                    Verdict::Accept => gossipsub::MessageAcceptance::Accept,
                    Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                    Verdict::Reject => gossipsub::MessageAcceptance::Reject,
                };
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&id, &source, acceptance);
            }
            Command::Sync {
                peer,
                request,
                reply,
            } => {
                if !self.members.contains_key(&peer) {
                    let _ = reply.send(Err(P2pError::NotMember(peer)));
                    return;
                }
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.syncs.insert(id, reply);
            }
            Command::Negotiate {
                peer,
                request,
                reply,
            } => {
                if !self.members.contains_key(&peer) {
                    let _ = reply.send(Err(P2pError::NotMember(peer)));
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .negotiate
                    .send_request(&peer, request);
                self.negotiations.insert(id, reply);
            }
            Command::RespondSync { channel, response } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response)
                    .is_err()
                {
                    tracing::debug!("a sync answer could not be sent");
                }
            }
            Command::RespondNegotiate { channel, response } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .negotiate
                    .send_response(channel, response)
                    .is_err()
                {
                    tracing::debug!("a negotiation answer could not be sent");
                }
            }
            Command::SetMembers {
                federation,
                members,
            } => self.set_members(federation, members),
            Command::Connected { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
        }
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) {
        let Some(federation) = &self.federation else {
            return;
        };
        let topic = gossipsub::IdentTopic::new(topic_name(topic, federation));
        match self.swarm.behaviour_mut().gossip.publish(topic, data) {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => tracing::warn!(error = %e, "gossip publish failed"),
        }
    }

    /// Applies a new membership: the allow-list, subscriptions, Kademlia and dials.
    fn set_members(&mut self, federation: Option<String>, members: Vec<MemberAddrs>) {
        let me = *self.swarm.local_peer_id();
        let next: HashMap<PeerId, Vec<Multiaddr>> = members
            .into_iter()
            .filter(|m| m.peer != me)
            .map(|m| (m.peer, m.addrs))
            .collect();
        let behaviour = self.swarm.behaviour_mut();
        for gone in self.members.keys().filter(|p| !next.contains_key(p)) {
            // Closes any connection to a removed member.
            behaviour.allow.disallow_peer(*gone);
            behaviour.kad.remove_peer(gone);
            self.gossip_limit.remove(gone);
            self.request_limit.remove(gone);
        }
        for (peer, addrs) in &next {
            behaviour.allow.allow_peer(*peer);
            for a in addrs {
                behaviour.kad.add_address(peer, a.clone());
            }
        }
        if federation != self.federation {
            let topics = [Topic::Catalog, Topic::Roster, Topic::Revocation];
            if let Some(old) = &self.federation {
                for t in topics {
                    behaviour
                        .gossip
                        .unsubscribe(&gossipsub::IdentTopic::new(topic_name(t, old)));
                }
            }
            if let Some(new) = &federation {
                for t in topics {
                    let topic = gossipsub::IdentTopic::new(topic_name(t, new));
                    if let Err(e) = behaviour.gossip.subscribe(&topic) {
                        tracing::error!(error = %e, "cannot subscribe to the federation's topics");
                    }
                }
            }
            self.federation = federation;
        }
        self.members = next;
        if !self.members.is_empty() {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
        self.dial_members();
    }

    fn dial_members(&mut self) {
        for (peer, addrs) in &self.members {
            if self.swarm.is_connected(peer) {
                continue;
            }
            let opts = DialOpts::peer_id(*peer)
                .addresses(addrs.clone())
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, error = %e, "dial failed");
            }
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "p2p listening");
                self.listen.push(address);
                self.listen_changed();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen.retain(|a| *a != address);
                self.listen_changed();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } if self.members.contains_key(&peer_id) => {
                if num_established.get() == 1 {
                    tracing::info!(peer = %peer_id, "member connected");
                }
                self.hand(Event::Connected {
                    peer: peer_id,
                    address: endpoint.get_remote_address().to_string(),
                    first: num_established.get() == 1,
                });
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::info!(peer = %peer_id, "member disconnected");
                self.hand(Event::Disconnected { peer: peer_id });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.sync_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Negotiate(e)) => self.negotiate_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if self.members.contains_key(&peer_id) => {
                for a in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
                }
                self.hand(Event::Seen { peer: peer_id });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    if self.members.contains_key(&peer) && !self.swarm.is_connected(&peer) {
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

    fn listen_changed(&mut self) {
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
        self.hand(Event::ListenAddrs(addrs));
    }

    fn gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        let topic = self.federation.as_ref().and_then(|f| {
            [Topic::Catalog, Topic::Roster, Topic::Revocation]
                .into_iter()
                .find(|t| message.topic == gossipsub::IdentTopic::new(topic_name(*t, f)).hash())
        });
        let event = Event::Gossip {
            topic: topic.unwrap_or(Topic::Catalog),
            source,
            id,
            data: message.data,
        };
        if topic.is_none() {
            return self.refuse(event, "");
        }
        if !self.gossip_limit.allow(source, Instant::now()) {
            tracing::warn!(%source, "gossip rate limit exceeded; message dropped");
            return self.refuse(event, "");
        }
        self.hand(event);
    }

    /// Whether an inbound request from `peer` may reach the node, else why not.
    fn admit(&mut self, peer: PeerId) -> Result<(), &'static str> {
        if !self.members.contains_key(&peer) {
            return Err("not a member");
        }
        if !self.request_limit.allow(peer, Instant::now()) {
            tracing::warn!(%peer, "request rate limit exceeded");
            return Err("rate limited");
        }
        Ok(())
    }

    fn sync_event(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        self.request_response_event(
            event,
            |l| &mut l.syncs,
            |peer, request, responder| Event::Sync {
                peer,
                request,
                responder,
            },
        );
    }

    fn negotiate_event(
        &mut self,
        event: request_response::Event<NegotiateRequest, NegotiateResponse>,
    ) {
        self.request_response_event(
            event,
            |l| &mut l.negotiations,
            |peer, request, responder| Event::Negotiate {
                peer,
                request,
                responder,
            },
        );
    }

    /// One request-response protocol's event: an inbound request is admitted (rate limit) and
    /// handed to the node as the `Event` that `make` builds, or refused; an outbound request's
    /// response or failure goes to its caller, waiting in the map that `pending` picks.
    fn request_response_event<Req, Resp>(
        &mut self,
        event: request_response::Event<Req, Resp>,
        pending: fn(&mut Self) -> &mut Pending<Resp>,
        make: impl FnOnce(PeerId, Req, Responder<Resp>) -> Event,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let responder = Responder {
                        channel,
                        tx: self.own.clone(),
                    };
                    let event = make(peer, request, responder);
                    match self.admit(peer) {
                        Ok(()) => self.hand(event),
                        Err(reason) => self.refuse(event, reason),
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = pending(self).remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = pending(self).remove(&request_id) {
                    let _ = reply.send(Err(P2pError::Request(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "an inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
