//! The cloneable handle the node talks to the network through: every call becomes a
//! [`Command`] for the [`crate::EventLoop`], those that wait for an answer carry a
//! `oneshot` sender for it, and every answer is typed.

use allmende_protocol::PeerId;
use allmende_protocol::negotiate::{NegotiateRequest, NegotiateResponse};
use allmende_protocol::sync::{SyncRequest, SyncResponse};
use libp2p::{Multiaddr, StreamProtocol, gossipsub, request_response};
use tokio::sync::{mpsc, oneshot};

use crate::P2pError;

/// A gossip topic of the federation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Signed catalog entries.
    Catalog,
    /// Roster proposals.
    Roster,
    /// Signed revocations.
    Revocation,
}

/// What the node decided about a gossip message: forward it, drop it quietly, or drop it and
/// penalise the peer that sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: forward it.
    Accept,
    /// Not forwarded (a duplicate, a store failure), the sender not penalised.
    Ignore,
    /// Invalid: not forwarded, the sender penalised.
    Reject,
}

/// A member to be allowed and dialled, with the addresses its card names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAddrs {
    /// The member.
    pub peer: PeerId,
    /// Its addresses (those that parse).
    pub addrs: Vec<Multiaddr>,
}

#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        topic: Topic,
        data: Vec<u8>,
    },
    Validated {
        id: gossipsub::MessageId,
        source: PeerId,
        verdict: Verdict,
    },
    Sync {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, P2pError>>,
    },
    Negotiate {
        peer: PeerId,
        request: NegotiateRequest,
        reply: oneshot::Sender<Result<NegotiateResponse, P2pError>>,
    },
    RespondSync {
        channel: request_response::ResponseChannel<SyncResponse>,
        response: SyncResponse,
    },
    RespondNegotiate {
        channel: request_response::ResponseChannel<NegotiateResponse>,
        response: NegotiateResponse,
    },
    SetMembers {
        federation: Option<String>,
        members: Vec<MemberAddrs>,
    },
    Connected {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
}

/// A handle to the network; cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) streams: libp2p_stream::Control,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("p2p::Client")
    }
}

impl Client {
    async fn send(&self, command: Command) -> Result<(), P2pError> {
        self.tx.send(command).await.map_err(|_| P2pError::Stopped)
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, P2pError>>) -> Command,
    ) -> Result<T, P2pError> {
        let (reply, answer) = oneshot::channel();
        self.send(command(reply)).await?;
        answer.await.map_err(|_| P2pError::Stopped)?
    }

    /// Gossips `data` on `topic` of the federation (nobody subscribed yet is not an error:
    /// anti-entropy delivers it when members connect).
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<(), P2pError> {
        self.send(Command::Publish { topic, data }).await
    }

    /// Reports the node's verdict on a gossip message it was handed.
    pub async fn validated(
        &self,
        id: gossipsub::MessageId,
        source: PeerId,
        verdict: Verdict,
    ) -> Result<(), P2pError> {
        self.send(Command::Validated {
            id,
            source,
            verdict,
        })
        .await
    }

    /// Sends a catalog-sync request to a member and waits for its answer (at most the
    /// protocol's 10 s request timeout).
    pub async fn sync(&self, peer: PeerId, request: SyncRequest) -> Result<SyncResponse, P2pError> {
        self.ask(|reply| Command::Sync {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Sends a negotiation request to a member and waits for its answer.
    pub async fn negotiate(
        &self,
        peer: PeerId,
        request: NegotiateRequest,
    ) -> Result<NegotiateResponse, P2pError> {
        self.ask(|reply| Command::Negotiate {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Puts the federation's members (and only them) on the allow-list, subscribes to its
    /// topics, and dials the members not connected; `None` leaves every federation.
    pub async fn set_members(
        &self,
        federation: Option<String>,
        members: Vec<MemberAddrs>,
    ) -> Result<(), P2pError> {
        self.send(Command::SetMembers {
            federation,
            members,
        })
        .await
    }

    /// The peers connected now.
    pub async fn connected(&self) -> Result<Vec<PeerId>, P2pError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Connected { reply }).await?;
        answer.await.map_err(|_| P2pError::Stopped)
    }

    /// Opens a stream of `protocol` to `peer`, dialling it if needed. A connection that closes
    /// while the stream waits for its turn is asked again, at most three times; the caller
    /// bounds the wait.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: &'static str,
    ) -> Result<libp2p::Stream, P2pError> {
        let mut control = self.streams.clone();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match control
                .open_stream(peer, StreamProtocol::new(protocol))
                .await
            {
                Ok(stream) => return Ok(stream),
                // libp2p-stream opens one stream at a time per connection; a connection that
                // closed meanwhile fails the queued opens.
                Err(libp2p_stream::OpenStreamError::Io(e))
                    if e.kind() == std::io::ErrorKind::ConnectionReset && attempts < 3 =>
                {
                    tracing::debug!(%peer, attempts, "connection closed before the stream opened");
                }
                Err(e) => {
                    return Err(P2pError::Unreachable(format!(
                        "cannot open a stream to `{peer}`: {e}"
                    )));
                }
            }
        }
    }

    /// The inbound streams of `protocol` from any connected peer (the caller checks who).
    pub fn accept_streams(
        &self,
        protocol: &'static str,
    ) -> Result<libp2p_stream::IncomingStreams, P2pError> {
        self.streams
            .clone()
            .accept(StreamProtocol::new(protocol))
            .map_err(|e| P2pError::Protocol(e.to_string()))
    }
}

/// Where the answer to an inbound request goes; answering consumes it.
pub struct Responder<R> {
    pub(crate) channel: request_response::ResponseChannel<R>,
    pub(crate) tx: mpsc::Sender<Command>,
}

impl<R> std::fmt::Debug for Responder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

impl Responder<SyncResponse> {
    /// Sends the answer.
    pub async fn respond(self, response: SyncResponse) -> Result<(), P2pError> {
        self.tx
            .send(Command::RespondSync {
                channel: self.channel,
                response,
            })
            .await
            .map_err(|_| P2pError::Stopped)
    }
}

impl Responder<NegotiateResponse> {
    /// Sends the answer.
    pub async fn respond(self, response: NegotiateResponse) -> Result<(), P2pError> {
        self.tx
            .send(Command::RespondNegotiate {
                channel: self.channel,
                response,
            })
            .await
            .map_err(|_| P2pError::Stopped)
    }
}
