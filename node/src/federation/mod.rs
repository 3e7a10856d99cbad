//! Regional federation: membership by a roster that members sign (no central operator), signed
//! catalog publication over gossipsub, anti-entropy sync, and search over the replicated catalog.
//!
//! [`Federation`] holds the state every part shares (roster, proposals, the catalog log, the
//! search index, peer status); [`network`] owns the libp2p swarm in one task and talks to the
//! rest through a [`Handle`].

mod codec;
pub(crate) mod frames;
pub mod log;
mod network;
pub(crate) mod ratelimit;
pub mod search;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use allmende_protocol::catalog::{EntryOp, SignedCatalogEntry};
use allmende_protocol::roster::{Member, Roster, RosterError, SignedRoster};
use allmende_protocol::{PeerId, SigningKey};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use allmende_store::keys::fed;
use allmende_store::{MAX_PAGE, Store, StoreError, StoredDataset};
pub use log::{CatalogLog, Outcome, Rejection};
pub use network::{NetworkError, spawn};
pub use search::{CatalogIndex, SearchQuery, SearchResult};

/// Most characters of a provider's refusal kept in the asker's answer.
const MAX_REASON_CHARS: usize = 200;
/// How often a stream is asked for when its connection closes before it opens.
const OPEN_ATTEMPTS: u32 = 3;

/// The current time in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Errors of federation operations.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The roster or proposal is not acceptable.
    #[error(transparent)]
    Roster(#[from] RosterError),
    /// The request does not fit the current state.
    #[error("{0}")]
    Invalid(String),
    /// Nothing matches.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The search index failed.
    #[error(transparent)]
    Search(#[from] search::SearchError),
    /// The network task is gone.
    #[error("the network task has stopped")]
    Stopped,
    /// A member could not be reached (no connection, or the dial failed or timed out).
    #[error("{0}")]
    Unreachable(String),
}

/// A member as shown in JSON: the card a node hands to others to be added to a roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberCard {
    /// The node's PeerId.
    pub peer_id: String,
    /// Its organisation.
    pub organisation: String,
    /// Its district key.
    pub district_key: String,
    /// Its roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Its libp2p addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
}

impl MemberCard {
    fn into_member(self) -> Result<Member, FederationError> {
        let peer_id = self
            .peer_id
            .parse::<PeerId>()
            .map_err(|_| FederationError::Invalid(format!("`{}` is not a PeerId", self.peer_id)))?;
        for a in &self.addresses {
            a.parse::<libp2p::Multiaddr>()
                .map_err(|_| FederationError::Invalid(format!("`{a}` is not a multiaddress")))?;
        }
        Ok(Member {
            peer_id,
            organisation: self.organisation,
            district_key: self.district_key,
            roles: self.roles,
            addresses: self.addresses,
        })
    }
}

impl From<&Member> for MemberCard {
    fn from(m: &Member) -> Self {
        Self {
            peer_id: m.peer_id.to_string(),
            organisation: m.organisation.clone(),
            district_key: m.district_key.clone(),
            roles: m.roles.clone(),
            addresses: m.addresses.clone(),
        }
    }
}

/// A member holding a dataset a federated query reads.
#[derive(Clone, Debug)]
pub struct Provider {
    /// The member's PeerId.
    pub peer: PeerId,
    /// Its name in queries.
    pub member: String,
    /// Its organisation.
    pub organisation: String,
    /// The dataset's id.
    pub dataset: String,
}

/// What the node knows about a connected peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerStatus {
    /// Its PeerId.
    pub peer_id: String,
    /// Remote addresses of its connections.
    pub addresses: Vec<String>,
    /// Last time anything was heard from it, Unix seconds.
    pub last_seen: u64,
}

/// Commands for the network task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Gossip a signed catalog entry.
    Announce(Vec<u8>),
    /// Gossip a roster proposal.
    Propose(Vec<u8>),
    /// The roster changed: update the allow-list, subscriptions and dials.
    RosterChanged,
    /// Gossip a signed revocation.
    Revoke(Vec<u8>),
    /// Send a negotiation request to a member and hand back its answer.
    Negotiate {
        peer: PeerId,
        request: allmende_protocol::negotiate::NegotiateRequest,
        reply: tokio::sync::oneshot::Sender<
            Result<allmende_protocol::negotiate::NegotiateResponse, String>,
        >,
    },
}

/// A handle to the network task.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
}

impl Handle {
    async fn send(&self, command: Command) -> Result<(), FederationError> {
        self.tx
            .send(command)
            .await
            .map_err(|_| FederationError::Stopped)
    }
}

impl Federation {
    /// Sends a command carrying a reply channel to the network task and waits for the answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, String>>) -> Command,
    ) -> Result<T, FederationError> {
        let handle = self.handle().ok_or(FederationError::Stopped)?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        handle.send(command(reply)).await?;
        match rx.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(message)) => Err(FederationError::Invalid(message)),
            Err(_) => Err(FederationError::Stopped),
        }
    }

    /// Sends a negotiation request to `peer` and waits (at most 15 s) for its answer.
    pub async fn negotiate(
        &self,
        peer: PeerId,
        request: allmende_protocol::negotiate::NegotiateRequest,
    ) -> Result<allmende_protocol::negotiate::NegotiateResponse, FederationError> {
        let answer = self.ask(|reply| Command::Negotiate {
            peer,
            request,
            reply,
        });
        tokio::time::timeout(std::time::Duration::from_secs(15), answer)
            .await
            .map_err(|_| FederationError::Invalid(format!("`{peer}` did not answer within 15 s")))?
    }

    /// Sends a federated query fragment to `peer` over a stream and assembles its answer: data
    /// frames (at most [`MAX_QUERY_RESPONSE_BYTES`] in all), then the signed header. The caller
    /// bounds the wait with its deadline. `request` makes the request for each attempt: an
    /// attempt after a dropped stream carries a fresh assertion, since the provider may have
    /// read (and so spent) the first one.
    ///
    /// [`MAX_QUERY_RESPONSE_BYTES`]: allmende_protocol::query::MAX_QUERY_RESPONSE_BYTES
    #[tracing::instrument(name = "ask_member", skip_all, fields(%peer))]
    pub async fn query(
        &self,
        peer: PeerId,
        request: impl Fn() -> Result<allmende_protocol::query::QueryRequest, String>,
    ) -> Result<allmende_protocol::query::QueryResponse, FederationError> {
        use allmende_protocol::query::{
            AnswerFrame, MAX_ANSWER_FRAME_BYTES, MAX_QUERY_RESPONSE_BYTES, QueryResponse,
        };
        use tokio_util::compat::FuturesAsyncReadCompatExt;
        let fail =
            |m: String| FederationError::Invalid(format!("the provider did not answer: {m}"));
        // A provider under load may drop an inbound stream before it is accepted (libp2p-stream
        // keeps no queue); a stream that fails before the first frame is asked again, at most
        // five times with growing pauses; the caller's deadline bounds the whole.
        let mut attempts = 0;
        let (mut io, first) = loop {
            attempts += 1;
            let stream = self
                .open_stream(peer, allmende_protocol::version::QUERY)
                .await?;
            let mut io = stream.compat();
            let request = request().map_err(FederationError::Invalid)?;
            let first = match frames::write_frame(&mut io, &request).await {
                Ok(()) => {
                    frames::read_frame_or_end::<AnswerFrame, _>(&mut io, MAX_ANSWER_FRAME_BYTES)
                        .await
                }
                Err(e) => Err(e),
            };
            let dropped = match first {
                // A refusal is final: asking again would only be refused again.
                Ok(Some(AnswerFrame::Refused(reason))) => {
                    let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
                    return Err(FederationError::Invalid(format!(
                        "the provider refused the query: {reason}"
                    )));
                }
                Ok(Some(first)) => break (io, first),
                Ok(None) => "it closed the stream".to_owned(),
                // An answer that is not a valid frame is not asked again.
                Err(e @ frames::FrameError::Invalid(_)) => return Err(fail(e.to_string())),
                Err(e) => e.to_string(),
            };
            if attempts >= 5 {
                return Err(fail(dropped));
            }
            tracing::debug!(attempts, reason = %dropped, "query stream dropped; asking again");
            tokio::time::sleep(std::time::Duration::from_millis(5 << attempts)).await;
        };
        let mut data = Vec::new();
        let mut next = Some(first);
        loop {
            let frame = match next.take() {
                Some(f) => f,
                None => frames::read_frame::<AnswerFrame, _>(&mut io, MAX_ANSWER_FRAME_BYTES)
                    .await
                    .map_err(|e| fail(e.to_string()))?,
            };
            match frame {
                AnswerFrame::Data(bytes) => {
                    if data.len() + bytes.len() > MAX_QUERY_RESPONSE_BYTES {
                        return Err(fail(format!(
                            "its answer exceeds {MAX_QUERY_RESPONSE_BYTES} bytes"
                        )));
                    }
                    data.extend_from_slice(&bytes);
                }
                AnswerFrame::Header(header) => {
                    return Ok(QueryResponse {
                        header,
                        batches: serde_bytes::ByteBuf::from(data),
                    });
                }
                AnswerFrame::Refused(_) => {
                    return Err(fail("a refusal after data".into()));
                }
            }
        }
    }

    /// The members (with dataset ids) that hold what a federated query reads: one member's
    /// dataset, or every visible dataset declaring a common schema (this node's own included).
    pub fn providers(
        &self,
        target: &crate::query::plan::Target,
    ) -> Result<Vec<Provider>, FederationError> {
        use crate::query::{member_name, plan::Target};
        let roster = self.roster();
        let member_of = |p: &PeerId| -> Option<(String, String)> {
            if *p == self.peer_id {
                return Some((self.organisation.clone(), self.district_key.clone()));
            }
            roster
                .as_ref()?
                .member(p)
                .map(|m| (m.organisation.clone(), m.district_key.clone()))
        };
        let mut out = Vec::new();
        for (entry, _) in self.log.latest_entries()?.iter() {
            let e = entry.payload();
            if e.op == EntryOp::Withdraw {
                continue;
            }
            let Some((organisation, district)) = member_of(&e.publisher) else {
                continue;
            };
            let member = member_name(&organisation);
            let matches = match target {
                Target::Member { member: m, dataset } => {
                    (*m == member || *m == format!("d{district}"))
                        && (e.dataset.slug == *dataset || e.dataset.id == *dataset)
                }
                Target::Federation { kind } => e.dataset.conforms_to.as_deref().is_some_and(|c| {
                    c == kind
                        || c.ends_with(&format!(":{kind}"))
                        || c.contains(&format!(":{kind}:"))
                }),
            };
            if matches {
                out.push(Provider {
                    peer: e.publisher,
                    member,
                    organisation,
                    dataset: e.dataset.id.clone(),
                });
            }
        }
        out.sort_by(|a, b| a.member.cmp(&b.member));
        Ok(out)
    }

    /// Gossips a signed revocation to the federation.
    pub async fn announce_revocation(&self, bytes: Vec<u8>) -> Result<(), FederationError> {
        if let Some(h) = self.handle() {
            h.send(Command::Revoke(bytes)).await?;
        }
        Ok(())
    }
}

/// The federation state shared by the API and the network task.
pub struct Federation {
    key: SigningKey,
    peer_id: PeerId,
    organisation: String,
    district_key: String,
    store: Arc<Store>,
    log: CatalogLog,
    index: CatalogIndex,
    roster: RwLock<Option<SignedRoster>>,
    pending: Mutex<BTreeMap<[u8; 32], SignedRoster>>,
    left: RwLock<bool>,
    peers: Mutex<HashMap<PeerId, PeerStatus>>,
    listen: RwLock<Vec<String>>,
    external: Vec<String>,
    handle: RwLock<Option<Handle>>,
    /// Opens and accepts raw libp2p streams (transfers).
    streams: RwLock<Option<libp2p_stream::Control>>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("peer_id", &self.peer_id)
            .finish()
    }
}

impl Federation {
    /// Loads the federation state from `store` and builds the search index.
    pub fn open(
        key: SigningKey,
        organisation: String,
        district_key: String,
        external: Vec<String>,
        store: Arc<Store>,
    ) -> Result<Self, FederationError> {
        let roster = match store.get_bytes(&fed::roster())? {
            Some(bytes) => Some(SignedRoster::from_bytes(&bytes)?),
            None => None,
        };
        let left = store.get_bytes(&fed::left())?.is_some();
        let log = CatalogLog::new(store.clone());
        let index = CatalogIndex::new()?;
        index.apply(&log.latest_entries()?)?;
        let mut pending = BTreeMap::new();
        for (_, bytes) in store.scan(&fed::PENDING, None, MAX_PAGE)? {
            if let Ok(p) = SignedRoster::from_bytes(&bytes) {
                pending.insert(p.hash(), p);
            }
        }
        Ok(Self {
            peer_id: allmende_protocol::peer_id_of(&key.verifying_key()),
            key,
            organisation,
            district_key,
            store,
            log,
            index,
            roster: RwLock::new(roster),
            pending: Mutex::new(pending),
            left: RwLock::new(left),
            peers: Mutex::new(HashMap::new()),
            listen: RwLock::new(Vec::new()),
            external,
            handle: RwLock::new(None),
            streams: RwLock::new(None),
        })
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The replicated catalog log.
    pub fn log(&self) -> &CatalogLog {
        &self.log
    }

    fn handle(&self) -> Option<Handle> {
        self.handle
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_handle(&self, handle: Handle) {
        *self.handle.write().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }

    pub(crate) fn set_streams(&self, control: libp2p_stream::Control) {
        *self.streams.write().unwrap_or_else(|p| p.into_inner()) = Some(control);
    }

    fn streams(&self) -> Result<libp2p_stream::Control, FederationError> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(FederationError::Stopped)
    }

    /// Opens a stream of `protocol` to the member `peer` (dialling it if needed), within 10 s.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: &'static str,
    ) -> Result<libp2p::Stream, FederationError> {
        if self.in_roster(|r| r.member(&peer).is_some()) != Some(true) {
            return Err(FederationError::Invalid(format!(
                "`{peer}` is not a member of this node's federation"
            )));
        }
        let mut control = self.streams()?;
        let open = async {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match control
                    .open_stream(peer, libp2p::StreamProtocol::new(protocol))
                    .await
                {
                    // The connection closed while the request waited for its turn (libp2p-stream
                    // opens one stream at a time per connection): ask over another or a new one.
                    Err(libp2p_stream::OpenStreamError::Io(e))
                        if e.kind() == std::io::ErrorKind::ConnectionReset
                            && attempts < OPEN_ATTEMPTS =>
                    {
                        tracing::debug!(%peer, attempts, "connection closed before the stream opened");
                    }
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(std::time::Duration::from_secs(10), open).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(FederationError::Unreachable(format!(
                "cannot open a stream to `{peer}`: {e}"
            ))),
            Err(_) => Err(FederationError::Unreachable(format!(
                "cannot open a stream to `{peer}` within 10 s"
            ))),
        }
    }

    /// The inbound streams of `protocol`, from any connected peer (the caller checks
    /// membership).
    pub fn accept_streams(
        &self,
        protocol: &'static str,
    ) -> Result<libp2p_stream::IncomingStreams, FederationError> {
        self.streams()?
            .accept(libp2p::StreamProtocol::new(protocol))
            .map_err(|e| FederationError::Invalid(e.to_string()))
    }

    /// Whether `peer` is a member of the current roster (and not this node).
    pub fn is_member(&self, peer: &PeerId) -> bool {
        *peer != self.peer_id && self.in_roster(|r| r.member(peer).is_some()) == Some(true)
    }

    /// The current roster, if this node is in a valid one and has not left it.
    pub fn roster(&self) -> Option<Roster> {
        self.in_roster(Roster::clone)
    }

    /// `f` of the current roster (as [`Self::roster`]) without copying it.
    fn in_roster<T>(&self, f: impl FnOnce(&Roster) -> T) -> Option<T> {
        if *self.left.read().unwrap_or_else(|p| p.into_inner()) {
            return None;
        }
        let guard = self.roster.read().unwrap_or_else(|p| p.into_inner());
        let roster = guard.as_ref()?.roster();
        (roster.valid_at(now()) && roster.contains(&self.peer_id)).then(|| f(roster))
    }

    fn signed_roster(&self) -> Option<SignedRoster> {
        self.roster
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The roster version held (0 for none).
    pub fn roster_version(&self) -> u64 {
        self.signed_roster().map_or(0, |r| r.roster().version)
    }

    /// This node's card, to be handed to a federation's members.
    pub fn card(&self) -> MemberCard {
        let addresses = if self.external.is_empty() {
            self.listen
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        } else {
            self.external.clone()
        };
        MemberCard {
            peer_id: self.peer_id.to_string(),
            organisation: self.organisation.clone(),
            district_key: self.district_key.clone(),
            roles: vec!["publisher".into(), "consumer".into()],
            addresses,
        }
    }

    pub(crate) fn set_listen_addrs(&self, addrs: Vec<String>) {
        *self.listen.write().unwrap_or_else(|p| p.into_inner()) = addrs;
    }

    pub(crate) fn peer_seen(&self, peer: PeerId, address: Option<String>) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let status = peers.entry(peer).or_insert_with(|| PeerStatus {
            peer_id: peer.to_string(),
            addresses: Vec::new(),
            last_seen: 0,
        });
        status.last_seen = now();
        if let Some(a) = address
            && !status.addresses.contains(&a)
        {
            status.addresses.push(a);
        }
    }

    pub(crate) fn peer_gone(&self, peer: &PeerId) {
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer);
    }

    fn keep_pending(&self, proposal: &SignedRoster) -> Result<(), FederationError> {
        let hash = proposal.hash();
        self.store
            .write(vec![(fed::pending(&hash), Some(proposal.to_bytes()?))])?;
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, proposal.clone());
        Ok(())
    }

    /// Accepts a roster (or more signatures on a proposal) from anywhere: merges it with what
    /// is pending, and installs it when it is a valid founding roster naming this node or a valid
    /// successor of the current one. Returns whether the roster changed.
    pub(crate) fn receive_roster(&self, incoming: SignedRoster) -> Result<bool, FederationError> {
        let current = self.signed_roster();
        let version = incoming.roster().version;
        let current_version = current.as_ref().map_or(0, |c| c.roster().version);
        if version <= current_version {
            return Ok(false);
        }
        let mut merged = incoming;
        if let Some(held) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&merged.hash())
        {
            merged.merge(held)?;
        }
        let valid = match &current {
            None => merged.verify_founding().is_ok() && merged.roster().contains(&self.peer_id),
            Some(c) => merged.verify_successor(c).is_ok(),
        };
        if !valid {
            self.keep_pending(&merged)?;
            return Ok(false);
        }
        self.install(merged)?;
        Ok(true)
    }

    fn install(&self, roster: SignedRoster) -> Result<(), FederationError> {
        let version = roster.roster().version;
        let mut ops = vec![(fed::roster(), Some(roster.to_bytes()?))];
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|hash, p| {
            let keep = p.roster().version > version;
            if !keep {
                ops.push((fed::pending(hash), None));
            }
            keep
        });
        if roster.roster().contains(&self.peer_id) {
            ops.push((fed::left(), None));
            *self.left.write().unwrap_or_else(|p| p.into_inner()) = false;
        }
        self.store.write(ops)?;
        tracing::info!(federation = %roster.roster().federation, version,
            members = roster.roster().members.len(), "roster installed");
        *self.roster.write().unwrap_or_else(|p| p.into_inner()) = Some(roster);
        Ok(())
    }

    async fn roster_changed(&self) -> Result<(), FederationError> {
        if let Some(h) = self.handle() {
            h.send(Command::RosterChanged).await?;
        }
        Ok(())
    }

    async fn propose(&self, proposal: &SignedRoster) -> Result<(), FederationError> {
        if let Some(h) = self.handle() {
            h.send(Command::Propose(proposal.to_bytes()?)).await?;
        }
        Ok(())
    }

    /// Creates a founding roster (version 1) of this node and the given members, signed by this
    /// node; every other member signs it in turn (`sign`) and each applies it.
    pub fn create(
        &self,
        federation: String,
        members: Vec<MemberCard>,
        threshold: Option<u32>,
        valid_until: Option<u64>,
    ) -> Result<SignedRoster, FederationError> {
        if self.roster().is_some() {
            return Err(FederationError::Invalid(
                "this node is already a member of a federation".into(),
            ));
        }
        let mut all = vec![self.card()];
        all.extend(members);
        let members = all
            .into_iter()
            .map(MemberCard::into_member)
            .collect::<Result<Vec<_>, _>>()?;
        let mut proposal = SignedRoster::new(Roster {
            federation,
            version: 1,
            prev: None,
            members,
            threshold,
            valid_from: now().saturating_sub(60),
            valid_until,
        })?;
        proposal.sign(&self.key);
        self.keep_pending(&proposal)?;
        Ok(proposal)
    }

    /// Adds this node's signature to a proposal (given in wire form), keeps it, gossips it, and
    /// installs it if it is now valid.
    pub async fn sign(&self, bytes: &[u8]) -> Result<SignedRoster, FederationError> {
        let mut proposal = SignedRoster::from_bytes(bytes)?;
        let current_version = self.roster_version();
        if proposal.roster().version <= current_version {
            return Err(FederationError::Invalid(format!(
                "the proposal has version {}, but version {current_version} is already installed",
                proposal.roster().version
            )));
        }
        if let Some(current) = self.signed_roster()
            && !current.roster().contains(&self.peer_id)
            && !proposal.roster().contains(&self.peer_id)
        {
            return Err(FederationError::Invalid("this node is not a member".into()));
        }
        proposal.sign(&self.key);
        self.keep_pending(&proposal)?;
        self.propose(&proposal).await?;
        if self.receive_roster(proposal.clone())? {
            self.roster_changed().await?;
        }
        Ok(self.pending_or_current(&proposal))
    }

    fn pending_or_current(&self, proposal: &SignedRoster) -> SignedRoster {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&proposal.hash())
            .cloned()
            .or_else(|| self.signed_roster().filter(|r| r.hash() == proposal.hash()))
            .unwrap_or_else(|| proposal.clone())
    }

    /// Installs a roster given in wire form if it is valid (founding roster signed by all,
    /// or successor signed by enough current members).
    pub async fn apply(&self, bytes: &[u8]) -> Result<(), FederationError> {
        let roster = SignedRoster::from_bytes(bytes)?;
        if self
            .signed_roster()
            .is_some_and(|c| c.hash() == roster.hash())
        {
            return Ok(());
        }
        match self.signed_roster() {
            None => {
                if !roster.roster().contains(&self.peer_id) {
                    return Err(FederationError::Invalid(
                        "this node is not a member of that roster".into(),
                    ));
                }
                if roster.roster().version > 1 {
                    // A node joining an existing federation has no earlier version to check
                    // the chain against: its operator vouches for the roster by applying it
                    // (as founders vouch for the founding roster), and it must carry the
                    // signatures of enough of the other members it lists.
                    let signers = roster.signers()?;
                    let r = roster.roster();
                    let have = signers
                        .iter()
                        .filter(|p| r.contains(p) && **p != self.peer_id)
                        .count();
                    // The previous version is unknown here; its members are at most the
                    // others listed, so ask for its threshold (default: a majority) of those.
                    let others = r.members.len().saturating_sub(1).max(1);
                    let need = match r.threshold {
                        Some(k) => (k as usize).clamp(1, others),
                        None => others / 2 + 1,
                    };
                    if have < need {
                        return Err(RosterError::NotEnoughSignatures { have, need }.into());
                    }
                    self.install(roster)?;
                    return self.roster_changed().await;
                }
                roster.verify_founding()?;
            }
            Some(current) => roster.verify_successor(&current)?,
        }
        if !self.receive_roster(roster)? {
            return Err(FederationError::Invalid(
                "the roster is not newer than the installed one".into(),
            ));
        }
        self.roster_changed().await
    }

    /// Proposes the next roster version with members added and removed, signed by this node.
    pub async fn propose_change(
        &self,
        add: Vec<MemberCard>,
        remove: Vec<String>,
    ) -> Result<SignedRoster, FederationError> {
        let current = self
            .signed_roster()
            .ok_or_else(|| FederationError::Invalid("this node has no roster yet".into()))?;
        let mut next = current.roster().clone();
        next.version += 1;
        next.prev = Some(current.hash());
        for peer in &remove {
            let before = next.members.len();
            next.members.retain(|m| m.peer_id.to_string() != *peer);
            if next.members.len() == before {
                return Err(FederationError::NotFound(format!(
                    "`{peer}` is not a member"
                )));
            }
        }
        for card in add {
            let member = card.into_member()?;
            if next.contains(&member.peer_id) {
                return Err(FederationError::Invalid(format!(
                    "`{}` is already a member",
                    member.peer_id
                )));
            }
            next.members.push(member);
        }
        let mut proposal = SignedRoster::new(next)?;
        proposal.sign(&self.key);
        self.keep_pending(&proposal)?;
        self.propose(&proposal).await?;
        if self.receive_roster(proposal.clone())? {
            self.roster_changed().await?;
        }
        Ok(self.pending_or_current(&proposal))
    }

    /// Leaves the federation: proposes this node's removal and stops taking part at once.
    pub async fn leave(&self) -> Result<SignedRoster, FederationError> {
        let proposal = self
            .propose_change(Vec::new(), vec![self.peer_id.to_string()])
            .await?;
        self.store.write(vec![(fed::left(), Some(b"1".to_vec()))])?;
        *self.left.write().unwrap_or_else(|p| p.into_inner()) = true;
        self.roster_changed().await?;
        Ok(proposal)
    }

    /// How many signatures installing `proposal` needs: every member for a founding roster,
    /// else the threshold of the roster installed now.
    pub fn signatures_needed(&self, proposal: &SignedRoster) -> usize {
        match self.signed_roster() {
            Some(current) if proposal.roster().version > current.roster().version => {
                current.roster().required()
            }
            _ => proposal.roster().members.len(),
        }
    }

    /// Pending proposals.
    pub fn pending(&self) -> Vec<SignedRoster> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Publishes (or re-publishes, or withdraws) one of this node's datasets: appends a signed
    /// entry to the local log, indexes it and gossips it.
    pub async fn publish(
        &self,
        dataset: &StoredDataset,
        policy: Option<allmende_protocol::PolicyRef>,
        withdraw: bool,
    ) -> Result<SignedCatalogEntry, FederationError> {
        let id = &dataset.record.id;
        let marker = fed::published(id);
        let published = self.store.get_bytes(&marker)?.is_some();
        let op = match (withdraw, published) {
            (true, false) => {
                return Err(FederationError::Invalid(format!(
                    "dataset `{id}` is not published"
                )));
            }
            (true, true) => EntryOp::Withdraw,
            (false, true) => EntryOp::Update,
            (false, false) => EntryOp::Create,
        };
        let entry = self
            .log
            .publish(&self.key, op, dataset.record.clone(), policy, now())
            .map_err(|e| FederationError::Invalid(e.to_string()))?;
        self.store
            .write(vec![(marker, (!withdraw).then(|| b"1".to_vec()))])?;
        self.index.apply(&[(entry.clone(), now())])?;
        if let Some(h) = self.handle() {
            h.send(Command::Announce(entry.to_bytes())).await?;
        }
        Ok(entry)
    }

    /// Checks that `dataset` can be re-published as it is (its signed entry fits the limits).
    pub fn check_publishable(
        &self,
        dataset: &StoredDataset,
        policy: Option<allmende_protocol::PolicyRef>,
    ) -> Result<(), FederationError> {
        self.log
            .check_publishable(&self.key, dataset.record.clone(), policy, now())
            .map_err(|e| FederationError::Invalid(e.to_string()))
    }

    /// Whether a dataset of this node is published.
    pub fn is_published(&self, id: &str) -> Result<bool, FederationError> {
        Ok(self.store.get_bytes(&fed::published(id))?.is_some())
    }

    /// Offers an entry received from the network; indexes it when applied.
    pub(crate) fn offer(&self, bytes: &[u8]) -> Result<Outcome, Rejection> {
        let roster = self.roster();
        let outcome = self.log.offer(bytes, roster.as_ref(), now())?;
        if let Outcome::Applied(entry) = &outcome
            && let Err(e) = self.index.apply(&[((**entry).clone(), now())])
        {
            tracing::error!(error = %e, "indexing a received entry failed");
        }
        Ok(outcome)
    }

    /// Searches the replicated catalog; entries of publishers outside the roster are hidden
    /// (this node's own entries are always visible to it).
    pub fn search(&self, query: &SearchQuery) -> Result<SearchResult, FederationError> {
        let roster = self.roster();
        let me = self.peer_id;
        let organisation = self.organisation.clone();
        let visible = |p: &PeerId| -> Option<String> {
            if *p == me {
                return Some(organisation.clone());
            }
            roster.as_ref()?.member(p).map(|m| m.organisation.clone())
        };
        Ok(self.index.search(query, &visible)?)
    }

    /// Datasets in the replicated catalog index.
    pub fn catalog_size(&self) -> u64 {
        self.index.len()
    }

    /// Connected peers.
    pub fn connected_count(&self) -> usize {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The organisation of a member (or of this node).
    pub fn organisation_of(&self, peer: &PeerId) -> Option<String> {
        if *peer == self.peer_id {
            return Some(self.organisation.clone());
        }
        self.in_roster(|r| r.member(peer).map(|m| m.organisation.clone()))?
    }

    /// The status shown by `GET /api/v1/federation`.
    pub fn status(&self) -> Result<serde_json::Value, FederationError> {
        let signed = self.signed_roster();
        let roster = signed.as_ref().map(|s| s.roster());
        let digest = self.log.digest(self.roster_version())?;
        let mut peers: Vec<PeerStatus> = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        let mut publishers = Vec::new();
        for h in &digest.heads {
            publishers.push(serde_json::json!({
                "peer_id": h.publisher.to_string(),
                "organisation": roster.and_then(|r| r.member(&h.publisher)).map(|m| m.organisation.clone()),
                "seq": h.seq,
                "head": hex::encode(h.hash),
                "flagged": self.log.flagged(&h.publisher)?,
            }));
        }
        let pending: Vec<serde_json::Value> = self
            .pending()
            .iter()
            .map(|p| {
                serde_json::json!({
                    "hash": hex::encode(p.hash()),
                    "version": p.roster().version,
                    "members": p.roster().members.iter().map(MemberCard::from).collect::<Vec<_>>(),
                    "signers": p.signers().map(|s| s.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default(),
                    "roster": hex::encode(p.to_bytes().unwrap_or_default()),
                })
            })
            .collect();
        Ok(serde_json::json!({
            "peer_id": self.peer_id.to_string(),
            "card": self.card(),
            "member": self.roster().is_some(),
            "left": *self.left.read().unwrap_or_else(|p| p.into_inner()),
            "roster": roster.map(|r| serde_json::json!({
                "federation": r.federation,
                "version": r.version,
                "hash": signed.as_ref().map(|s| hex::encode(s.hash())),
                "threshold": r.required(),
                "valid_from": r.valid_from,
                "valid_until": r.valid_until,
                "members": r.members.iter().map(MemberCard::from).collect::<Vec<_>>(),
            })),
            "pending": pending,
            "connected": peers,
            "digest": hex::encode(digest.hash()),
            "publishers": publishers,
            "catalog_size": self.index.len(),
            "evidence": self.log.evidence_count()?,
        }))
    }
}
