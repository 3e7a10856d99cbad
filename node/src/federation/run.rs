//! Hands the network's events to the federation: gossip judged in arrival order, members'
//! requests answered concurrently (a bounded number at once), connections tracked, and on
//! every sync interval an anti-entropy round and an audit checkpoint.

use std::sync::Arc;
use std::time::Duration;

use allmende_p2p::{Event, Verdict};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::sync::Syncing;
use super::{Federation, gossip, negotiate};
use crate::policies::Policies;

/// Members' requests answered at once.
const REQUESTS_AT_ONCE: usize = 16;

/// Starts handling `events` for `fed`; the task runs until the network's events end.
pub fn spawn(
    fed: Arc<Federation>,
    policies: Arc<Policies>,
    mut events: mpsc::Receiver<Event>,
    sync_interval: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = fed.apply_to_network().await {
            tracing::error!(error = %e, "cannot apply the roster to the network");
        }
        let syncing = Arc::new(Syncing::default());
        let requests = Arc::new(Semaphore::new(REQUESTS_AT_ONCE));
        let gossip = judge_in_order(fed.clone(), policies.clone(), syncing.clone());
        let mut tick = tokio::time::interval(sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(e) => handle(&fed, &policies, &syncing, &requests, &gossip, e),
                    None => break,
                },
                _ = tick.tick() => {
                    let (f, p, s) = (fed.clone(), policies.clone(), syncing.clone());
                    tokio::spawn(async move { s.round(&f, &p).await });
                    let p = policies.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = p.checkpoint() {
                            tracing::error!(error = %e, "audit checkpoint failed");
                        }
                    });
                }
            }
        }
    })
}

type Gossip = (
    allmende_p2p::Topic,
    allmende_protocol::PeerId,
    allmende_p2p::MessageId,
    Vec<u8>,
);

/// A task judging gossip one message at a time, so that the entries of one publisher are
/// offered in the order they came.
fn judge_in_order(
    fed: Arc<Federation>,
    policies: Arc<Policies>,
    syncing: Arc<Syncing>,
) -> mpsc::Sender<Gossip> {
    let (tx, mut rx) = mpsc::channel::<Gossip>(1024);
    tokio::spawn(async move {
        while let Some((topic, source, id, data)) = rx.recv().await {
            let verdict = gossip::judge(&fed, &policies, &syncing, topic, source, data).await;
            if fed.client().validated(id, source, verdict).await.is_err() {
                break;
            }
        }
    });
    tx
}

fn handle(
    fed: &Arc<Federation>,
    policies: &Arc<Policies>,
    syncing: &Arc<Syncing>,
    requests: &Arc<Semaphore>,
    gossip: &mpsc::Sender<Gossip>,
    event: Event,
) {
    match event {
        Event::Gossip {
            topic,
            source,
            id,
            data,
        } => {
            if let Err(mpsc::error::TrySendError::Full((_, source, id, _))) =
                gossip.try_send((topic, source, id, data))
            {
                tracing::warn!("gossip arrives faster than it is judged; a message is dropped");
                let client = fed.client().clone();
                tokio::spawn(async move { client.validated(id, source, Verdict::Ignore).await });
            }
        }
        Event::Sync {
            peer,
            request,
            responder,
        } => {
            let (fed, policies, syncing, requests) = (
                fed.clone(),
                policies.clone(),
                syncing.clone(),
                requests.clone(),
            );
            let span = tracing::debug_span!("sync_request", %peer);
            tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let _permit = requests.acquire().await;
                    let answer = syncing.answer(&fed, &policies, peer, request).await;
                    if responder.respond(answer).await.is_err() {
                        tracing::debug!(%peer, "sync answer not sent: the network stopped");
                    }
                },
                span,
            ));
        }
        Event::Negotiate {
            peer,
            request,
            responder,
        } => {
            let (policies, requests) = (policies.clone(), requests.clone());
            let span = tracing::info_span!("negotiate", %peer);
            tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let _permit = requests.acquire().await;
                    let answer = negotiate::answer(&policies, peer, request).await;
                    if responder.respond(answer).await.is_err() {
                        tracing::debug!(%peer, "negotiation answer not sent: the network stopped");
                    }
                },
                span,
            ));
        }
        Event::Connected {
            peer,
            address,
            first,
        } => {
            fed.peer_seen(peer, Some(address));
            if first {
                let (fed, syncing) = (fed.clone(), syncing.clone());
                tokio::spawn(async move { syncing.exchange_digests(&fed, peer).await });
            }
        }
        Event::Disconnected { peer } => {
            fed.peer_gone(&peer);
            syncing.forget(&peer);
        }
        Event::Seen { peer } => fed.peer_seen(peer, None),
        Event::ListenAddrs(addrs) => fed.set_listen_addrs(addrs),
        _ => {}
    }
}
