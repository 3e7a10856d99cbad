//! What serving a member's request needs, whatever the protocol (federated query fragments,
//! transfers, and the protocols to come): the engine, the datasets, the policies, the node's
//! key, the memory one request may use, and the check of the asker's assertion with its replay
//! guard.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use allmende_data::datasets::Datasets;
use allmende_data::sql::Engine;
use allmende_protocol::query::{AssertionError, UserAssertion};
use allmende_protocol::{PeerId, SigningKey};

use crate::policies::Policies;

/// Assertion nonces kept at most; past that, new assertions are refused until old ones expire.
const MAX_NONCES: usize = 100_000;

/// Why an asker's assertion is refused.
#[derive(Debug, thiserror::Error)]
pub enum AssertionRefused {
    /// It does not open or check.
    #[error(transparent)]
    Invalid(#[from] AssertionError),
    /// It was used before, or too many are in use.
    #[error("the assertion was used before (replay) or too many are in use")]
    Replay,
}

/// The nonces of the assertions seen, with their expiry, and when they were last pruned.
#[derive(Default)]
struct Nonces {
    seen: HashMap<[u8; 32], u64>,
    pruned: u64,
}

/// What serving a member's request needs.
pub struct Serving {
    engine: Engine,
    datasets: Arc<Datasets>,
    policies: Arc<Policies>,
    key: SigningKey,
    me: PeerId,
    memory_limit: u64,
    nonces: Mutex<Nonces>,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving").field("me", &self.me).finish()
    }
}

impl Serving {
    /// Serving with these parts; one request may use `memory_limit` bytes.
    pub fn new(
        engine: Engine,
        datasets: Arc<Datasets>,
        policies: Arc<Policies>,
        key: SigningKey,
        memory_limit: u64,
    ) -> Self {
        Self {
            me: allmende_protocol::peer_id_of(&key.verifying_key()),
            engine,
            datasets,
            policies,
            key,
            memory_limit,
            nonces: Mutex::new(Nonces::default()),
        }
    }

    /// The query engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The node's datasets.
    pub fn datasets(&self) -> &Arc<Datasets> {
        &self.datasets
    }

    /// The node's policies, agreements and audit log.
    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
    }

    /// The node's signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// This node's PeerId.
    pub fn me(&self) -> PeerId {
        self.me
    }

    /// Memory one request may use.
    pub fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    /// Opens the asker's assertion and refuses a replay.
    pub fn assertion(
        &self,
        asker: &PeerId,
        bytes: &[u8],
    ) -> Result<UserAssertion, AssertionRefused> {
        let now = allmende_p2p::clock::now();
        let a = UserAssertion::open(bytes, asker, &self.me, now)?;
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        if nonces.pruned != now {
            nonces.seen.retain(|_, expires| *expires >= now);
            nonces.pruned = now;
        }
        if nonces.seen.len() >= MAX_NONCES || nonces.seen.insert(a.nonce, a.expires).is_some() {
            return Err(AssertionRefused::Replay);
        }
        Ok(a)
    }
}
