//! Contract negotiation over the network: asking a provider for its signed offer and for an
//! agreement, and answering members who ask this node (the policy work on a blocking thread).

use std::sync::Arc;
use std::time::Duration;

use allmende_protocol::PeerId;
use allmende_protocol::negotiate::{NegotiateRequest, NegotiateResponse};
use serde_bytes::ByteBuf;

use super::{Federation, FederationError};
use crate::policies::Policies;

/// How long a member may take to answer a negotiation request.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

impl Federation {
    /// Sends a negotiation request to `peer` and waits (at most 15 s) for its answer.
    pub async fn negotiate(
        &self,
        peer: PeerId,
        request: NegotiateRequest,
    ) -> Result<NegotiateResponse, FederationError> {
        match tokio::time::timeout(ANSWER_WITHIN, self.client.negotiate(peer, request)).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(FederationError::NoAnswer {
                peer,
                secs: ANSWER_WITHIN.as_secs(),
            }),
        }
    }
}

/// This node's answer to a member's negotiation request: its signed offer for a dataset, or
/// the agreement it countersigns (audited either way by [`Policies::conclude`]).
pub(super) async fn answer(
    policies: &Arc<Policies>,
    peer: PeerId,
    request: NegotiateRequest,
) -> NegotiateResponse {
    let policies = policies.clone();
    let answered = tokio::task::spawn_blocking(move || match request {
        NegotiateRequest::Offer { dataset } => match policies.get(&dataset) {
            Ok(Some(offer)) => NegotiateResponse::Offer(ByteBuf::from(offer.to_bytes())),
            Ok(None) => NegotiateResponse::Refused(format!("dataset `{dataset}` has no policy")),
            Err(e) => NegotiateResponse::Refused(format!("store error: {e}")),
        },
        NegotiateRequest::Agree { dataset, request } => {
            match policies.conclude(peer, &dataset, &request) {
                Ok(agreement) => NegotiateResponse::Agreement(ByteBuf::from(agreement.to_bytes())),
                Err(e) => NegotiateResponse::Refused(e.to_string()),
            }
        }
    })
    .await;
    answered.unwrap_or_else(|e| NegotiateResponse::Refused(format!("the node failed: {e}")))
}
