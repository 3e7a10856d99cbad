//! The audit log's Merkle proofs (RFC 9162), which a witness checks on a cosign request.
use allmende_policy::audit::{Hash, verify_consistency, verify_inclusion};

/// Reads sizes, hashes and a proof from `data` and runs both proof checks on them.
pub fn audit(data: &[u8]) {
    let mut rest = data;
    let mut u64_of = || -> Option<u64> {
        let (head, tail) = rest.split_first_chunk::<8>()?;
        rest = tail;
        Some(u64::from_le_bytes(*head))
    };
    let (Some(a), Some(b)) = (u64_of(), u64_of()) else {
        return;
    };
    let hashes: Vec<Hash> = rest
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap_or([0; 32]))
        .collect();
    let (first, second, proof) = match hashes.as_slice() {
        [x, y, proof @ ..] => (*x, *y, proof),
        _ => return,
    };
    let _ = verify_inclusion(&first, a, b, proof, &second);
    let _ = verify_consistency(a, b, &first, &second, proof);
    let _ = verify_consistency(a % 4096, b % 4096, &first, &second, proof);
    let _ = verify_inclusion(&first, a % 4096, b % 4096, proof, &second);
}
