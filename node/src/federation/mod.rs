//! The regional federation as this node takes part in it: membership by a roster the members
//! sign ([`roster`], persisted and announced by [`membership`]), the signed catalog log
//! ([`log`]) this node publishes to ([`publish`]) and replicates by gossip ([`gossip`]) and
//! anti-entropy ([`sync`]), contract negotiation ([`negotiate`]) and search over the
//! replicated catalog ([`search`]). [`run`] hands the network's events to these; the network
//! itself is `allmende_p2p`, reached through the [`allmende_p2p::Client`] the federation
//! holds from the start.

mod gossip;
pub mod log;
mod membership;
mod negotiate;
mod publish;
pub mod roster;
mod run;
pub mod search;
mod sync;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use allmende_p2p::{Client, P2pError};
use allmende_protocol::roster::{Member, Roster, RosterError, SignedRoster};
use allmende_protocol::{PeerId, SigningKey};
use allmende_store::keys::fed;
use allmende_store::{MAX_PAGE, Store, StoreError};
use serde::{Deserialize, Serialize};

pub use allmende_p2p::clock::now;
pub use log::{CatalogLog, Outcome, PublishError, Rejection};
pub use roster::{Membership, MembershipError};
pub use run::spawn;
pub use search::{CatalogIndex, SearchQuery, SearchResult};

/// How long opening a stream to a member may take.
const OPEN_STREAM: Duration = Duration::from_secs(10);

/// Errors of federation operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// The roster operation is refused.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// A roster does not decode or verify.
    #[error(transparent)]
    Roster(#[from] RosterError),
    /// A member card does not hold a valid PeerId or multiaddress.
    #[error("invalid member card: {0}")]
    InvalidCard(String),
    /// The dataset is not published, so it cannot be withdrawn.
    #[error("dataset `{0}` is not published")]
    NotPublished(String),
    /// Signing or appending this node's entry failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The peer asked about is not a member.
    #[error("`{0}` is not a member of this node's federation")]
    NotMember(PeerId),
    /// A member did not answer in time.
    #[error("`{peer}` did not answer within {secs} s")]
    NoAnswer {
        /// The member.
        peer: PeerId,
        /// How long was waited.
        secs: u64,
    },
    /// The network failed or a member could not be reached.
    #[error(transparent)]
    P2p(#[from] P2pError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The search index failed.
    #[error(transparent)]
    Search(#[from] search::SearchError),
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
    /// The roster member this card describes.
    pub fn into_member(self) -> Result<Member, FederationError> {
        let peer_id = self.peer_id.parse::<PeerId>().map_err(|_| {
            FederationError::InvalidCard(format!("`{}` is not a PeerId", self.peer_id))
        })?;
        for a in &self.addresses {
            a.parse::<allmende_p2p::Multiaddr>().map_err(|_| {
                FederationError::InvalidCard(format!("`{a}` is not a multiaddress"))
            })?;
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

/// The federation state shared by the API, the query and transfer protocols and the handlers
/// of network events.
pub struct Federation {
    key: SigningKey,
    peer_id: PeerId,
    organisation: String,
    district_key: String,
    store: Arc<Store>,
    log: CatalogLog,
    index: CatalogIndex,
    membership: RwLock<Membership>,
    peers: Mutex<HashMap<PeerId, PeerStatus>>,
    listen: RwLock<Vec<String>>,
    external: Vec<String>,
    client: Client,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("peer_id", &self.peer_id)
            .finish()
    }
}

/// Who this node is in its federation.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Its key.
    pub key: SigningKey,
    /// Its organisation.
    pub organisation: String,
    /// Its district key.
    pub district_key: String,
    /// Addresses other members should dial (empty: the listen addresses).
    pub external: Vec<String>,
}

impl Federation {
    /// Loads the federation state from `store` and builds the search index; `client` is the
    /// network, usable at once (its commands wait until the event loop runs).
    pub fn open(me: Identity, store: Arc<Store>, client: Client) -> Result<Self, FederationError> {
        let peer_id = allmende_protocol::peer_id_of(&me.key.verifying_key());
        let current = match store.get_bytes(&fed::roster())? {
            Some(bytes) => Some(SignedRoster::from_bytes(&bytes)?),
            None => None,
        };
        let left = store.get_bytes(&fed::left())?.is_some();
        let pending: Vec<SignedRoster> = store
            .scan(&fed::PENDING, None, MAX_PAGE)?
            .into_iter()
            .filter_map(|(_, bytes)| SignedRoster::from_bytes(&bytes).ok())
            .collect();
        let log = CatalogLog::new(store.clone());
        let index = CatalogIndex::new()?;
        index.apply(&log.latest_entries()?)?;
        Ok(Self {
            peer_id,
            key: me.key,
            organisation: me.organisation,
            district_key: me.district_key,
            store,
            log,
            index,
            membership: RwLock::new(Membership::new(peer_id, current, pending, left)),
            peers: Mutex::new(HashMap::new()),
            listen: RwLock::new(Vec::new()),
            external: me.external,
            client,
        })
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// This node's organisation.
    pub fn organisation(&self) -> &str {
        &self.organisation
    }

    /// This node's district key.
    pub fn district_key(&self) -> &str {
        &self.district_key
    }

    /// The replicated catalog log.
    pub fn log(&self) -> &CatalogLog {
        &self.log
    }

    /// The network.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn membership(&self) -> std::sync::RwLockReadGuard<'_, Membership> {
        self.membership.read().unwrap_or_else(|p| p.into_inner())
    }

    /// `f` of the roster this node takes part in now, without copying it.
    pub fn in_roster<T>(&self, f: impl FnOnce(&Roster) -> T) -> Option<T> {
        self.membership().roster_at(now()).map(f)
    }

    /// The current roster, if this node is in a valid one and has not left it.
    pub fn roster(&self) -> Option<Roster> {
        self.in_roster(Roster::clone)
    }

    /// The installed roster, whatever its state.
    pub fn signed_roster(&self) -> Option<SignedRoster> {
        self.membership().installed().cloned()
    }

    /// The roster version held (0 for none).
    pub fn roster_version(&self) -> u64 {
        self.membership().version()
    }

    /// Whether this node left its federation.
    pub fn has_left(&self) -> bool {
        self.membership().left()
    }

    /// Whether `peer` is a member of the current roster (and not this node).
    pub fn is_member(&self, peer: &PeerId) -> bool {
        *peer != self.peer_id && self.in_roster(|r| r.contains(peer)) == Some(true)
    }

    /// The organisation of a member (or of this node).
    pub fn organisation_of(&self, peer: &PeerId) -> Option<String> {
        if *peer == self.peer_id {
            return Some(self.organisation.clone());
        }
        self.in_roster(|r| r.member(peer).map(|m| m.organisation.clone()))?
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

    /// The peers connected now, ordered by PeerId.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let mut peers: Vec<PeerStatus> = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        peers
    }

    /// Connected peers.
    pub fn connected_count(&self) -> usize {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Opens a stream of `protocol` to the member `peer` (dialling it if needed), within 10 s.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: &'static str,
    ) -> Result<allmende_p2p::Stream, FederationError> {
        if !self.is_member(&peer) {
            return Err(FederationError::NotMember(peer));
        }
        match tokio::time::timeout(OPEN_STREAM, self.client.open_stream(peer, protocol)).await {
            Ok(opened) => Ok(opened?),
            Err(_) => Err(P2pError::Unreachable(format!(
                "cannot open a stream to `{peer}` within {} s",
                OPEN_STREAM.as_secs()
            ))
            .into()),
        }
    }

    /// The inbound streams of `protocol`, from any connected peer (the caller checks
    /// membership).
    pub fn accept_streams(
        &self,
        protocol: &'static str,
    ) -> Result<libp2p_stream::IncomingStreams, FederationError> {
        Ok(self.client.accept_streams(protocol)?)
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

    /// Gossips a signed revocation to the federation.
    pub async fn announce_revocation(&self, bytes: Vec<u8>) -> Result<(), FederationError> {
        Ok(self
            .client
            .publish(allmende_p2p::Topic::Revocation, bytes)
            .await?)
    }
}
