//! Contract negotiation between a consumer and a provider, carried over the request-response
//! protocol [`crate::version::NEGOTIATE`]: the consumer fetches the provider's signed offer for a
//! dataset, signs a request referencing the offer's hash, and gets back the agreement the
//! provider countersigned. The envelopes themselves are defined by the policy crate; here they
//! travel as bytes.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Largest negotiation message accepted.
pub const MAX_NEGOTIATE_BYTES: usize = 512 * 1024;

/// A negotiation request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NegotiateRequest {
    /// "Send me your signed offer for this dataset."
    Offer {
        /// The dataset id.
        dataset: String,
    },
    /// "I accept that offer: here is my signed request."
    Agree {
        /// The dataset id.
        dataset: String,
        /// The consumer-signed request (COSE_Sign1).
        request: ByteBuf,
    },
}

/// A negotiation response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NegotiateResponse {
    /// The signed offer (COSE_Sign1).
    Offer(ByteBuf),
    /// The provider-countersigned agreement (COSE_Sign1).
    Agreement(ByteBuf),
    /// Refused, with the reason.
    Refused(String),
}
