//! Anti-entropy: on every (re)connection and every sync interval this node exchanges version
//! vectors with a member and fetches the ranges of entries it lacks, so that a node that was
//! offline converges; and it asks the member to cosign its latest audit checkpoint. It answers
//! the same requests from members. Store work runs on blocking threads.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use allmende_protocol::PeerId;
use allmende_protocol::roster::SignedRoster;
use allmende_protocol::sync::{
    Digest, MAX_RANGE_ENTRIES, MAX_RESPONSE_BYTES, SyncRequest, SyncResponse,
};
use serde_bytes::ByteBuf;

use super::{Federation, Outcome};
use crate::policies::Policies;

/// The ranges being fetched, by (member asked, publisher), so that one gap is fetched once.
#[derive(Debug, Default)]
pub(super) struct Syncing {
    in_flight: Mutex<HashSet<(PeerId, PeerId)>>,
}

/// Runs `work` on a blocking thread; `None` if it panicked.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(work).await.ok()
}

impl Syncing {
    /// Forgets what was in flight with `peer` (it disconnected).
    pub(super) fn forget(&self, peer: &PeerId) {
        self.lock().retain(|(p, _)| p != peer);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(PeerId, PeerId)>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One anti-entropy round with a random connected member.
    pub(super) async fn round(&self, fed: &Arc<Federation>, policies: &Arc<Policies>) {
        let connected: Vec<PeerId> = fed
            .peers()
            .iter()
            .filter_map(|p| p.peer_id.parse().ok())
            .filter(|p| fed.is_member(p))
            .collect();
        if connected.is_empty() {
            return;
        }
        let peer = connected[rand_index(connected.len())];
        self.exchange_digests(fed, peer).await;
        cosign(fed, policies, peer).await;
    }

    /// Sends this node's digest to `peer` and fetches what its digest shows this node lacks
    /// (and a newer roster, if it sends one).
    pub(super) async fn exchange_digests(&self, fed: &Arc<Federation>, peer: PeerId) {
        let ours = {
            let fed = fed.clone();
            blocking(move || fed.log().digest(fed.roster_version())).await
        };
        let ours = match ours {
            Some(Ok(d)) => d,
            Some(Err(e)) => return tracing::error!(error = %e, "cannot compute the digest"),
            None => return,
        };
        match fed.client().sync(peer, SyncRequest::Digest(ours)).await {
            Ok(SyncResponse::Digest { digest, roster }) => {
                fed.peer_seen(peer, None);
                if let Some(bytes) = roster {
                    match SignedRoster::from_bytes(&bytes) {
                        Ok(r) => {
                            if let Err(e) = fed.receive_roster(r).await {
                                tracing::warn!(%peer, error = %e, "roster from sync not accepted");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "invalid roster in sync response")
                        }
                    }
                }
                self.pull_missing(fed, peer, &digest).await;
            }
            Ok(SyncResponse::Refused(reason)) => tracing::debug!(%peer, %reason, "digest refused"),
            Ok(other) => tracing::debug!(%peer, ?other, "unexpected answer to a digest"),
            Err(e) => tracing::debug!(%peer, error = %e, "digest exchange failed"),
        }
    }

    /// Fetches from `peer` whatever `theirs` shows it has and this node lacks: the missing
    /// tail of each member's log, or the entry of a seq that differs (as evidence).
    async fn pull_missing(&self, fed: &Arc<Federation>, peer: PeerId, theirs: &Digest) {
        let Some(roster) = fed.roster() else {
            return;
        };
        let ours = {
            let fed = fed.clone();
            blocking(move || fed.log().digest(0)).await
        };
        let ours = match ours {
            Some(Ok(d)) => d,
            Some(Err(e)) => return tracing::error!(error = %e, "cannot compute the digest"),
            None => return,
        };
        for head in theirs
            .heads
            .iter()
            .filter(|h| roster.contains(&h.publisher))
        {
            let mine = ours.heads.iter().find(|h| h.publisher == head.publisher);
            let have = mine.map_or(0, |h| h.seq);
            if head.seq > have {
                self.pull(fed, peer, head.publisher, have + 1, MAX_RANGE_ENTRIES)
                    .await;
            } else if head.seq == have && mine.is_some_and(|m| m.hash != head.hash) {
                self.pull(fed, peer, head.publisher, head.seq, 1).await;
            }
        }
    }

    /// Fetches `publisher`'s entries from `from` on from `peer` and offers them to the log,
    /// range after range while the ranges come back full.
    pub(super) async fn pull(
        &self,
        fed: &Arc<Federation>,
        peer: PeerId,
        publisher: PeerId,
        mut from: u64,
        limit: u32,
    ) {
        if !self.lock().insert((peer, publisher)) {
            return;
        }
        loop {
            let request = SyncRequest::Range {
                publisher,
                from,
                limit,
            };
            let entries = match fed.client().sync(peer, request).await {
                Ok(SyncResponse::Entries(entries)) => entries,
                Ok(SyncResponse::Refused(reason)) => {
                    tracing::debug!(%peer, %reason, "range refused");
                    break;
                }
                Ok(other) => {
                    tracing::debug!(%peer, ?other, "unexpected answer to a range");
                    break;
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "range request failed");
                    break;
                }
            };
            let full = entries.len() >= limit as usize;
            let offering = fed.clone();
            let applied = blocking(move || {
                let mut last = None;
                for bytes in entries.iter().take(MAX_RANGE_ENTRIES as usize) {
                    match offering.offer(bytes) {
                        Ok(Outcome::Applied(e)) => last = Some(e.payload().seq),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "entry from sync rejected");
                            break;
                        }
                    }
                }
                last
            })
            .await
            .flatten();
            match applied {
                Some(seq) if full && limit == MAX_RANGE_ENTRIES => from = seq + 1,
                _ => break,
            }
        }
        self.lock().remove(&(peer, publisher));
    }

    /// This node's answer to a member's request.
    pub(super) async fn answer(
        self: &Arc<Self>,
        fed: &Arc<Federation>,
        policies: &Arc<Policies>,
        peer: PeerId,
        request: SyncRequest,
    ) -> SyncResponse {
        fed.peer_seen(peer, None);
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
                let policies = policies.clone();
                let witnessed =
                    blocking(move || policies.witness(&peer, &checkpoint, from, &proof)).await;
                match witnessed {
                    Some(Ok(c)) => SyncResponse::Cosignature(ByteBuf::from(c.to_bytes())),
                    Some(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "refused to cosign a checkpoint");
                        SyncResponse::Refused(e.to_string())
                    }
                    None => SyncResponse::Refused("the witness failed".into()),
                }
            }
            SyncRequest::Digest(theirs) => {
                let reading = fed.clone();
                let ours = blocking(move || reading.log().digest(reading.roster_version())).await;
                let ours = match ours {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return SyncResponse::Refused(format!("store error: {e}")),
                    None => return SyncResponse::Refused("store error".into()),
                };
                let roster = (theirs.roster_version < ours.roster_version)
                    .then(|| fed.signed_roster())
                    .flatten()
                    .and_then(|r| r.to_bytes().ok())
                    .map(ByteBuf::from);
                // What the asker has and this node lacks is fetched meanwhile.
                let (fed, syncing) = (fed.clone(), self.clone());
                tokio::spawn(async move { syncing.pull_missing(&fed, peer, &theirs).await });
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
                let reading = fed.clone();
                let range =
                    blocking(move || reading.log().range(&publisher, from.max(1), limit)).await;
                match range {
                    Some(Ok(entries)) => {
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
                    Some(Err(e)) => SyncResponse::Refused(format!("store error: {e}")),
                    None => SyncResponse::Refused("store error".into()),
                }
            }
        }
    }
}

/// Asks `witness` to cosign this node's latest audit checkpoint, if it has not yet, and keeps
/// the cosignature.
async fn cosign(fed: &Arc<Federation>, policies: &Arc<Policies>, witness: PeerId) {
    let asking = policies.clone();
    let request = match blocking(move || asking.cosign_request(&witness)).await {
        Some(Ok(Some(c))) => SyncRequest::Cosign {
            checkpoint: ByteBuf::from(c.checkpoint),
            from: c.from,
            proof: c.proof.iter().map(|h| ByteBuf::from(h.to_vec())).collect(),
        },
        Some(Ok(None)) | None => return,
        Some(Err(e)) => {
            return tracing::error!(error = %e, "cannot prepare a checkpoint for cosigning");
        }
    };
    match fed.client().sync(witness, request).await {
        Ok(SyncResponse::Cosignature(bytes)) => {
            let keeping = policies.clone();
            if let Some(Err(e)) = blocking(move || keeping.keep_cosignature(&witness, &bytes)).await
            {
                tracing::warn!(%witness, error = %e, "cosignature not kept");
            }
        }
        Ok(SyncResponse::Refused(reason)) => {
            tracing::debug!(%witness, %reason, "cosigning refused");
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(%witness, error = %e, "cosign request failed"),
    }
}

fn rand_index(n: usize) -> usize {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) % n as u64) as usize
}
