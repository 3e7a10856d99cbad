//! The roster operations of this node: founding, signing, applying, proposing and leaving
//! ([`super::roster`] decides), each change stored in one synced batch, proposals gossiped,
//! and a changed roster applied to the network (allow-list, topics, dials).

use allmende_p2p::{MemberAddrs, Topic};
use allmende_protocol::PeerId;
use allmende_protocol::roster::SignedRoster;
use allmende_store::keys::fed;

use super::roster::Changes;
use super::{Federation, FederationError, MemberCard, now};

impl Federation {
    /// Stores what a roster operation changed; tells whether a roster was installed.
    async fn persist(&self, changes: &Changes) -> Result<bool, FederationError> {
        let mut ops = Vec::new();
        if let Some(roster) = &changes.installed {
            ops.push((fed::roster(), Some(roster.to_bytes()?)));
            tracing::info!(federation = %roster.roster().federation,
                version = roster.roster().version,
                members = roster.roster().members.len(), "roster installed");
        }
        if let Some(kept) = &changes.kept {
            ops.push((fed::pending(&kept.hash()), Some(kept.to_bytes()?)));
        }
        for hash in &changes.dropped {
            ops.push((fed::pending(hash), None));
        }
        match changes.left {
            Some(true) => ops.push((fed::left(), Some(b"1".to_vec()))),
            Some(false) => ops.push((fed::left(), None)),
            None => {}
        }
        if !ops.is_empty() {
            self.store.blocking(move |s| s.write(ops)).await?;
        }
        Ok(changes.installed.is_some())
    }

    /// Runs `op` on the roster state, stores its changes and, when the roster changed, applies
    /// it to the network.
    async fn change<T>(
        &self,
        op: impl FnOnce(&mut super::Membership) -> Result<(T, Changes), FederationError>,
    ) -> Result<T, FederationError> {
        let (out, changes) = {
            let mut membership = self.membership.write().unwrap_or_else(|p| p.into_inner());
            op(&mut membership)?
        };
        let installed = self.persist(&changes).await?;
        if installed || changes.left.is_some() {
            self.apply_to_network().await?;
        }
        Ok(out)
    }

    /// Puts the current roster's members on the network's allow-list (none when this node
    /// is in no valid roster or left), subscribes to its topics and dials its members.
    pub(crate) async fn apply_to_network(&self) -> Result<(), FederationError> {
        let roster = self.roster();
        let members: Vec<MemberAddrs> = roster
            .iter()
            .flat_map(|r| r.members.iter())
            .filter(|m| m.peer_id != self.peer_id)
            .map(|m| MemberAddrs {
                peer: m.peer_id,
                addrs: m.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            })
            .collect();
        let allowed: Vec<PeerId> = members.iter().map(|m| m.peer).collect();
        for gone in self
            .peers()
            .iter()
            .filter_map(|p| p.peer_id.parse::<PeerId>().ok())
        {
            if !allowed.contains(&gone) {
                self.peer_gone(&gone);
            }
        }
        self.client
            .set_members(roster.map(|r| r.federation), members)
            .await?;
        Ok(())
    }

    /// Accepts a roster (or more signatures on a proposal) from anywhere: merges it with what
    /// is pending, and installs it when valid. Returns whether the roster changed.
    pub(crate) async fn receive_roster(
        &self,
        incoming: SignedRoster,
    ) -> Result<bool, FederationError> {
        self.change(|m| {
            let changes = m.receive(incoming)?;
            Ok((changes.installed.is_some(), changes))
        })
        .await
    }

    async fn announce(&self, proposal: &SignedRoster) -> Result<(), FederationError> {
        Ok(self
            .client
            .publish(Topic::Roster, proposal.to_bytes()?)
            .await?)
    }

    /// Creates a founding roster (version 1) of this node and the given members, signed by this
    /// node; every other member signs it in turn (`sign`) and each applies it.
    pub async fn create(
        &self,
        federation: String,
        members: Vec<MemberCard>,
        threshold: Option<u32>,
        valid_until: Option<u64>,
    ) -> Result<SignedRoster, FederationError> {
        let me = self.card().into_member()?;
        let others = members
            .into_iter()
            .map(MemberCard::into_member)
            .collect::<Result<Vec<_>, _>>()?;
        let window = (now().saturating_sub(60), valid_until);
        self.change(|m| Ok(m.found(federation, me, others, threshold, window, &self.key)?))
            .await
    }

    /// Adds this node's signature to a proposal (given in wire form), keeps it, gossips it, and
    /// installs it if it is now valid.
    pub async fn sign(&self, bytes: &[u8]) -> Result<SignedRoster, FederationError> {
        let proposal = SignedRoster::from_bytes(bytes)?;
        let signed = self.change(|m| Ok(m.sign(proposal, &self.key)?)).await?;
        self.announce(&signed).await?;
        Ok(signed)
    }

    /// Installs a roster given in wire form if it is valid (founding roster signed by all,
    /// or successor signed by enough current members).
    pub async fn apply(&self, bytes: &[u8]) -> Result<(), FederationError> {
        let roster = SignedRoster::from_bytes(bytes)?;
        self.change(|m| Ok(((), m.apply(roster)?))).await
    }

    /// Proposes the next roster version with members added and removed, signed by this node.
    pub async fn propose_change(
        &self,
        add: Vec<MemberCard>,
        remove: Vec<String>,
    ) -> Result<SignedRoster, FederationError> {
        let add = add
            .into_iter()
            .map(MemberCard::into_member)
            .collect::<Result<Vec<_>, _>>()?;
        let remove = remove
            .iter()
            .map(|p| {
                p.parse::<PeerId>()
                    .map_err(|_| FederationError::InvalidCard(format!("`{p}` is not a PeerId")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let proposal = self
            .change(|m| Ok(m.propose(add, &remove, &self.key)?))
            .await?;
        self.announce(&proposal).await?;
        Ok(proposal)
    }

    /// Leaves the federation: proposes this node's removal and stops taking part at once.
    pub async fn leave(&self) -> Result<SignedRoster, FederationError> {
        let proposal = self
            .propose_change(Vec::new(), vec![self.peer_id.to_string()])
            .await?;
        self.change(|m| Ok(((), m.leave()))).await?;
        Ok(proposal)
    }

    /// How many signatures installing `proposal` needs: every member for a founding roster,
    /// else the threshold of the roster installed now.
    pub fn signatures_needed(&self, proposal: &SignedRoster) -> usize {
        self.membership().signatures_needed(proposal)
    }

    /// Pending proposals.
    pub fn pending(&self) -> Vec<SignedRoster> {
        self.membership().pending().cloned().collect()
    }
}
