//! The roster's lifecycle as pure state: the roster in force, the proposals waiting for
//! signatures, and whether this node left. Every operation returns the [`Changes`] the caller
//! persists and announces; nothing here stores, sends or reads the clock.

use std::collections::BTreeMap;

use allmende_protocol::roster::{Member, Roster, RosterError, SignedRoster};
use allmende_protocol::{PeerId, SigningKey};

/// Why a roster operation is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The roster or a signature on it is not acceptable.
    #[error(transparent)]
    Roster(#[from] RosterError),
    /// This node already belongs to a federation.
    #[error("this node is already a member of a federation")]
    AlreadyMember,
    /// This node is not in the roster asked about.
    #[error("this node is not a member of that roster")]
    NotInRoster,
    /// This node has no roster yet.
    #[error("this node has no roster yet")]
    NoRoster,
    /// The proposal is not newer than what is installed.
    #[error("the proposal has version {proposed}, but version {installed} is already installed")]
    Stale {
        /// The proposal's version.
        proposed: u64,
        /// The installed version.
        installed: u64,
    },
    /// A member to remove is not in the roster.
    #[error("`{0}` is not a member")]
    UnknownMember(PeerId),
    /// A member to add is already in the roster.
    #[error("`{0}` is already a member")]
    AlreadyListed(PeerId),
}

/// What an operation changed, for the caller to store and announce.
#[derive(Debug, Default)]
pub struct Changes {
    /// A roster installed: store it, apply it to the network.
    pub installed: Option<SignedRoster>,
    /// A proposal kept (new, or with more signatures): store it.
    pub kept: Option<SignedRoster>,
    /// Proposals no longer pending (superseded by the installed roster): forget them.
    pub dropped: Vec<[u8; 32]>,
    /// Whether this node left (`Some(true)`) or is back in (`Some(false)`).
    pub left: Option<bool>,
}

/// The roster state of one node.
#[derive(Debug)]
pub struct Membership {
    me: PeerId,
    current: Option<SignedRoster>,
    pending: BTreeMap<[u8; 32], SignedRoster>,
    left: bool,
}

impl Membership {
    /// The state of node `me` as stored.
    pub fn new(
        me: PeerId,
        current: Option<SignedRoster>,
        pending: impl IntoIterator<Item = SignedRoster>,
        left: bool,
    ) -> Self {
        Self {
            me,
            current,
            pending: pending.into_iter().map(|p| (p.hash(), p)).collect(),
            left,
        }
    }

    /// The roster this node takes part in at `now`: installed, valid, naming this node, and not
    /// left.
    pub fn roster_at(&self, now: u64) -> Option<&Roster> {
        if self.left {
            return None;
        }
        let roster = self.current.as_ref()?.roster();
        (roster.valid_at(now) && roster.contains(&self.me)).then_some(roster)
    }

    /// The installed roster, whatever its state.
    pub fn installed(&self) -> Option<&SignedRoster> {
        self.current.as_ref()
    }

    /// The installed version (0 for none).
    pub fn version(&self) -> u64 {
        self.current.as_ref().map_or(0, |r| r.roster().version)
    }

    /// Whether this node left its federation.
    pub fn left(&self) -> bool {
        self.left
    }

    /// The proposals waiting for signatures.
    pub fn pending(&self) -> impl Iterator<Item = &SignedRoster> {
        self.pending.values()
    }

    /// How many signatures installing `proposal` needs: every member for a founding roster,
    /// else the threshold of the installed roster.
    pub fn signatures_needed(&self, proposal: &SignedRoster) -> usize {
        match &self.current {
            Some(current) if proposal.roster().version > current.roster().version => {
                current.roster().required()
            }
            _ => proposal.roster().members.len(),
        }
    }

    /// `proposal` as held now: pending with the signatures gathered, or installed.
    pub fn held(&self, proposal: &SignedRoster) -> SignedRoster {
        self.pending
            .get(&proposal.hash())
            .cloned()
            .or_else(|| self.current.clone().filter(|r| r.hash() == proposal.hash()))
            .unwrap_or_else(|| proposal.clone())
    }

    fn keep(&mut self, proposal: SignedRoster, changes: &mut Changes) {
        self.pending.insert(proposal.hash(), proposal.clone());
        changes.kept = Some(proposal);
    }

    fn install(&mut self, roster: SignedRoster, changes: &mut Changes) {
        let version = roster.roster().version;
        self.pending.retain(|hash, p| {
            let keep = p.roster().version > version;
            if !keep {
                changes.dropped.push(*hash);
            }
            keep
        });
        if roster.roster().contains(&self.me) && self.left {
            self.left = false;
            changes.left = Some(false);
        }
        self.current = Some(roster.clone());
        changes.installed = Some(roster);
    }

    /// Takes a roster (or more signatures on a proposal) from anywhere: merges it with what is
    /// pending and installs it when it is a valid founding roster naming this node or a valid
    /// successor of the installed one; otherwise keeps it pending. Older versions are ignored.
    pub fn receive(&mut self, incoming: SignedRoster) -> Result<Changes, MembershipError> {
        let mut changes = Changes::default();
        if incoming.roster().version <= self.version() {
            return Ok(changes);
        }
        let mut merged = incoming;
        if let Some(held) = self.pending.get(&merged.hash()) {
            merged.merge(held)?;
        }
        let valid = match &self.current {
            None => merged.verify_founding().is_ok() && merged.roster().contains(&self.me),
            Some(c) => merged.verify_successor(c).is_ok(),
        };
        if valid {
            self.install(merged, &mut changes);
        } else {
            self.keep(merged, &mut changes);
        }
        Ok(changes)
    }

    /// A founding roster (version 1) of this node's member entry and `others`, valid from
    /// `valid_from`, signed by this node and kept pending until every founder signed.
    pub fn found(
        &mut self,
        federation: String,
        me: Member,
        others: Vec<Member>,
        threshold: Option<u32>,
        (valid_from, valid_until): (u64, Option<u64>),
        key: &SigningKey,
    ) -> Result<(SignedRoster, Changes), MembershipError> {
        if self.current.is_some() && !self.left {
            return Err(MembershipError::AlreadyMember);
        }
        let mut members = vec![me];
        members.extend(others);
        let mut proposal = SignedRoster::new(Roster {
            federation,
            version: 1,
            prev: None,
            members,
            threshold,
            valid_from,
            valid_until,
        })?;
        proposal.sign(key);
        let mut changes = Changes::default();
        self.keep(proposal.clone(), &mut changes);
        Ok((proposal, changes))
    }

    /// Adds this node's signature to `proposal`, keeps it, and installs it if it now carries
    /// enough signatures.
    pub fn sign(
        &mut self,
        mut proposal: SignedRoster,
        key: &SigningKey,
    ) -> Result<(SignedRoster, Changes), MembershipError> {
        let installed = self.version();
        if proposal.roster().version <= installed {
            return Err(MembershipError::Stale {
                proposed: proposal.roster().version,
                installed,
            });
        }
        if let Some(current) = &self.current
            && !current.roster().contains(&self.me)
            && !proposal.roster().contains(&self.me)
        {
            return Err(MembershipError::NotInRoster);
        }
        proposal.sign(key);
        let mut changes = Changes::default();
        self.keep(proposal.clone(), &mut changes);
        let received = self.receive(proposal.clone())?;
        changes.installed = received.installed;
        changes.dropped.extend(received.dropped);
        changes.left = changes.left.or(received.left);
        if changes.installed.is_some() {
            changes.kept = None;
        }
        Ok((self.held(&proposal), changes))
    }

    /// Installs a roster its operator applies: a founding roster signed by every founder, a
    /// successor of the installed one, or — for a node joining an existing federation, which
    /// has no earlier version to check against — a later version signed by enough of the
    /// other members it lists (the threshold it names, else a majority).
    pub fn apply(&mut self, roster: SignedRoster) -> Result<Changes, MembershipError> {
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.hash() == roster.hash())
        {
            return Ok(Changes::default());
        }
        match &self.current {
            None => {
                if !roster.roster().contains(&self.me) {
                    return Err(MembershipError::NotInRoster);
                }
                if roster.roster().version > 1 {
                    let signers = roster.signers()?;
                    let r = roster.roster();
                    let have = signers
                        .iter()
                        .filter(|p| r.contains(p) && **p != self.me)
                        .count();
                    let others = r.members.len().saturating_sub(1).max(1);
                    let need = match r.threshold {
                        Some(k) => (k as usize).clamp(1, others),
                        None => others / 2 + 1,
                    };
                    if have < need {
                        return Err(RosterError::NotEnoughSignatures { have, need }.into());
                    }
                    let mut changes = Changes::default();
                    self.install(roster, &mut changes);
                    return Ok(changes);
                }
                roster.verify_founding()?;
            }
            Some(current) => roster.verify_successor(current)?,
        }
        let proposed = roster.roster().version;
        let changes = self.receive(roster)?;
        if changes.installed.is_none() {
            return Err(MembershipError::Stale {
                proposed,
                installed: self.version(),
            });
        }
        Ok(changes)
    }

    /// Proposes the next version with `add` added and `remove` removed, signed by this node.
    pub fn propose(
        &mut self,
        add: Vec<Member>,
        remove: &[PeerId],
        key: &SigningKey,
    ) -> Result<(SignedRoster, Changes), MembershipError> {
        let current = self.current.as_ref().ok_or(MembershipError::NoRoster)?;
        let mut next = current.roster().clone();
        next.version += 1;
        next.prev = Some(current.hash());
        for peer in remove {
            let before = next.members.len();
            next.members.retain(|m| m.peer_id != *peer);
            if next.members.len() == before {
                return Err(MembershipError::UnknownMember(*peer));
            }
        }
        for member in add {
            if next.contains(&member.peer_id) {
                return Err(MembershipError::AlreadyListed(member.peer_id));
            }
            next.members.push(member);
        }
        let proposal = SignedRoster::new(next)?;
        self.sign(proposal, key)
    }

    /// Stops taking part (the caller proposes this node's removal first).
    pub fn leave(&mut self) -> Changes {
        self.left = true;
        Changes {
            left: Some(true),
            ..Changes::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn member(n: u8) -> Member {
        Member {
            peer_id: allmende_protocol::peer_id_of(&key(n).verifying_key()),
            organisation: format!("Stadt {n}"),
            district_key: format!("0{n}000"),
            roles: vec![],
            addresses: vec![],
        }
    }

    fn node(n: u8) -> Membership {
        Membership::new(member(n).peer_id, None, [], false)
    }

    /// Three founders: 1 founds, 2 and 3 sign in turn, each receives the others' signatures.
    fn founded() -> (Membership, Membership, Membership, SignedRoster) {
        let (mut a, mut b, mut c) = (node(1), node(2), node(3));
        let (proposal, changes) = a
            .found(
                "muensterland".into(),
                member(1),
                vec![member(2), member(3)],
                None,
                (0, None),
                &key(1),
            )
            .unwrap();
        assert!(changes.kept.is_some() && changes.installed.is_none());
        let (proposal, changes) = b.sign(proposal, &key(2)).unwrap();
        assert!(changes.installed.is_none(), "2 of 3 founders");
        let (proposal, changes) = c.sign(proposal, &key(3)).unwrap();
        assert!(changes.installed.is_some(), "all founders signed");
        for n in [&mut a, &mut b] {
            assert!(n.receive(proposal.clone()).unwrap().installed.is_some());
        }
        (a, b, c, proposal)
    }

    #[test]
    fn a_founding_roster_is_installed_once_every_founder_signed() {
        let (a, b, c, roster) = founded();
        for n in [&a, &b, &c] {
            assert_eq!(n.version(), 1);
            assert!(n.roster_at(10).is_some());
            assert_eq!(n.pending().count(), 0);
            assert_eq!(n.installed().map(SignedRoster::hash), Some(roster.hash()));
        }
        // Receiving it again changes nothing.
        let mut a = a;
        let again = a.receive(roster).unwrap();
        assert!(again.installed.is_none() && again.kept.is_none());
    }

    #[test]
    fn a_successor_needs_the_threshold_of_the_installed_roster() {
        let (mut a, mut b, _c, _) = founded();
        let (proposal, changes) = a.propose(vec![member(4)], &[], &key(1)).unwrap();
        assert!(changes.installed.is_none(), "1 of the 2 needed");
        assert_eq!(a.signatures_needed(&proposal), 2);
        let (signed, changes) = b.sign(proposal, &key(2)).unwrap();
        assert!(changes.installed.is_some(), "a majority of 3 signed");
        assert!(a.receive(signed).unwrap().installed.is_some());
        assert_eq!(a.version(), 2);
        assert_eq!(a.installed().unwrap().roster().members.len(), 4);
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let (mut a, _b, _c, roster) = founded();
        assert!(matches!(
            a.found("x".into(), member(1), vec![], None, (0, None), &key(1)),
            Err(MembershipError::AlreadyMember)
        ));
        assert!(matches!(
            a.sign(roster, &key(1)),
            Err(MembershipError::Stale {
                proposed: 1,
                installed: 1
            })
        ));
        assert!(matches!(
            a.propose(vec![], &[member(9).peer_id], &key(1)),
            Err(MembershipError::UnknownMember(_))
        ));
        assert!(matches!(
            a.propose(vec![member(2)], &[], &key(1)),
            Err(MembershipError::AlreadyListed(_))
        ));
        let mut stranger = node(9);
        let (founding, _) = node(1)
            .found(
                "y".into(),
                member(1),
                vec![member(2)],
                None,
                (0, None),
                &key(1),
            )
            .unwrap();
        assert!(matches!(
            stranger.apply(founding),
            Err(MembershipError::NotInRoster)
        ));
    }

    #[test]
    fn a_joining_node_applies_a_later_version_signed_by_enough_others() {
        let (mut a, mut b, _c, _) = founded();
        let (proposal, _) = a.propose(vec![member(4)], &[], &key(1)).unwrap();
        let (signed, _) = b.sign(proposal, &key(2)).unwrap();
        let mut newcomer = node(4);
        let changes = newcomer.apply(signed).unwrap();
        assert!(changes.installed.is_some());
        assert_eq!(newcomer.version(), 2);
        // With one signature of the three others, it is refused.
        let (only_a, _) = a.propose(vec![member(5)], &[], &key(1)).unwrap();
        assert!(matches!(
            node(5).apply(only_a),
            Err(MembershipError::Roster(
                RosterError::NotEnoughSignatures { .. }
            ))
        ));
    }

    #[test]
    fn a_node_that_left_takes_part_no_more_until_a_roster_names_it_again() {
        let (mut a, ..) = founded();
        assert_eq!(a.leave().left, Some(true));
        assert!(a.roster_at(10).is_none());
        assert!(a.left());
    }
}
