//! Offline checks of each node's replicated catalog log, read from its store after the node has
//! stopped: every stored entry's signature verifies and its signer is its publisher, a member of
//! the federation; each publisher's chain runs from seq 1 to its head without a gap, each entry
//! naming its predecessor's hash; the head record names the last entry.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use allmende_node::federation::CatalogLog;
use allmende_protocol::{MAX_ENVELOPE_BYTES, SignedCatalogEntry};
use allmende_store::Store;
use anyhow::{Context, anyhow, ensure};

/// What one node's log holds.
pub(crate) struct LogAudit {
    /// Entries checked.
    pub(crate) entries: usize,
    /// Publishers with at least one entry.
    pub(crate) publishers: usize,
    /// Conflicting entries kept as evidence (equivocation).
    pub(crate) evidence: usize,
}

/// Checks the log in the store of the data dir `dir` against the member PeerIds `members`.
pub(crate) fn audit_log(dir: &Path, members: &BTreeSet<String>) -> anyhow::Result<LogAudit> {
    let store = Store::open_read_only(dir)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("opening {}", dir.display()))?;
    let log = CatalogLog::new(Arc::new(store));
    let digest = log.digest(0).map_err(|e| anyhow!("{e}"))?;
    let mut entries = 0;
    for head in &digest.heads {
        let publisher = head.publisher.to_string();
        ensure!(
            members.contains(&publisher),
            "entries of `{publisher}`, which is not a member"
        );
        let stored = log
            .range(&head.publisher, 1, u32::MAX)
            .map_err(|e| anyhow!("{e}"))?;
        ensure!(
            stored.len() as u64 == head.seq,
            "`{publisher}`: {} entries held, head seq {} (a gap)",
            stored.len(),
            head.seq
        );
        let mut prev: Option<SignedCatalogEntry> = None;
        for (k, s) in stored.iter().enumerate() {
            let entry = SignedCatalogEntry::from_bytes(&s.bytes, MAX_ENVELOPE_BYTES)
                .map_err(|e| anyhow!("`{publisher}` entry {}: {e}", k + 1))?;
            ensure!(
                entry.payload().seq == k as u64 + 1,
                "`{publisher}`: entry {} has seq {} (a gap)",
                k + 1,
                entry.payload().seq
            );
            entry
                .check_chain(prev.as_ref())
                .map_err(|e| anyhow!("`{publisher}` entry {}: {e}", k + 1))?;
            prev = Some(entry);
        }
        ensure!(
            prev.map(|p| p.hash()) == Some(head.hash),
            "`{publisher}`: the head does not name the last entry"
        );
        entries += stored.len();
    }
    Ok(LogAudit {
        entries,
        publishers: digest.heads.len(),
        evidence: log.evidence_count().map_err(|e| anyhow!("{e}"))?,
    })
}
