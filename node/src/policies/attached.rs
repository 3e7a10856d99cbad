//! Signed policies attached to datasets, and their use counts.

use allmende_policy::sign::{self, SignedPolicy};
use allmende_policy::values::XsdDateTime;
use allmende_policy::{Policy, PolicyId, PolicyKind};
use allmende_protocol::MAX_ENVELOPE_BYTES;
use allmende_store::keys::policy;
use allmende_store::{Store, StoreError};

use super::{OPENED_KEPT, Policies, PolicyError, dataset_target};

impl Policies {
    /// The signed policy of a dataset.
    pub fn get(&self, dataset: &str) -> Result<Option<SignedPolicy>, PolicyError> {
        let Some(bytes) = self.store.get_bytes(&policy::attached(dataset))? else {
            return Ok(None);
        };
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((held, policy)) = opened.get(dataset)
            && *held == bytes
        {
            return Ok(Some(policy.clone()));
        }
        let policy =
            sign::open_policy(&bytes, MAX_ENVELOPE_BYTES).map_err(|e| StoreError::Corrupt {
                key: format!("policy/{dataset}"),
                message: e.to_string(),
            })?;
        if opened.len() >= OPENED_KEPT {
            opened.clear();
        }
        opened.insert(dataset.to_owned(), (bytes, policy.clone()));
        Ok(Some(policy))
    }

    /// Attaches a policy (JSON-LD) to a dataset: sets the target, issuer, issued, expiry (one
    /// year unless given), version and the previous version's id, signs it and stores it.
    pub fn attach(&self, dataset: &str, json: &str) -> Result<SignedPolicy, PolicyError> {
        let target = dataset_target(dataset);
        let did = allmende_protocol::did_key_of(&self.key.verifying_key());
        let mut value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| PolicyError::Invalid(format!("not JSON: {e}")))?;
        let object = value
            .as_object_mut()
            .ok_or_else(|| PolicyError::Invalid("a policy is one JSON-LD object".into()))?;
        match object.get("target") {
            Some(serde_json::Value::String(t)) if *t != target => {
                return Err(PolicyError::Invalid(format!(
                    "the policy's target is `{t}`, but this dataset is `{target}` (or leave the target out)"
                )));
            }
            Some(serde_json::Value::String(_)) => {}
            Some(_) => return Err(PolicyError::Invalid("`target` must be a string".into())),
            None => {
                object.insert("target".into(), target.clone().into());
            }
        }
        if object.get("@type").and_then(|t| t.as_str()) == Some("Offer")
            && !object.contains_key("assigner")
        {
            object.insert("assigner".into(), did.clone().into());
        }
        let mut policy: Policy = allmende_policy::parse::jsonld::from_value(&value)?;
        if policy.kind != PolicyKind::Offer && policy.kind != PolicyKind::Set {
            return Err(PolicyError::Invalid(
                "a dataset's policy is an `Offer` or a `Set`".into(),
            ));
        }
        let now = chrono::Utc::now();
        policy.issuer = Some(did);
        policy.issued = Some(XsdDateTime::from_utc(now));
        if policy.expires.is_none() {
            policy.expires = Some(XsdDateTime::from_utc(now + chrono::Duration::days(365)));
        }
        let previous = self.get(dataset)?;
        policy.version = Some(
            previous
                .as_ref()
                .and_then(|p| p.payload().version)
                .unwrap_or(0)
                + 1,
        );
        policy.previous = previous.as_ref().map(sign::policy_id).transpose()?;
        let signed = sign::sign_policy(&policy, &self.key)?;
        self.store
            .write(vec![(policy::attached(dataset), Some(signed.to_bytes()))])?;
        Ok(signed)
    }

    /// Removes a dataset's policy (when the dataset is deleted).
    pub fn detach(&self, dataset: &str) -> Result<(), PolicyError> {
        Ok(self.store.write(vec![(policy::attached(dataset), None)])?)
    }

    /// Past use under a policy (queries answered), for `count` and `elapsedTime` constraints.
    pub fn usage(&self, id: &PolicyId) -> Result<allmende_policy::Usage, PolicyError> {
        Ok(
            match self
                .store
                .get_cbor::<(u64, i64)>(&policy::usage(&id.to_hex()))?
            {
                Some((count, first)) => allmende_policy::Usage {
                    count,
                    first_use: chrono::DateTime::from_timestamp(first, 0),
                },
                None => allmende_policy::Usage::default(),
            },
        )
    }

    /// Counts one more use under a policy.
    pub fn count_use(&self, id: &PolicyId) -> Result<(), PolicyError> {
        let _guard = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let usage = self.usage(id)?;
        let first = usage
            .first_use
            .map_or_else(|| chrono::Utc::now().timestamp(), |t| t.timestamp());
        let key = policy::usage(&id.to_hex());
        let bytes = Store::cbor(&key, &(usage.count + 1, first))?;
        Ok(self.store.write(vec![(key, Some(bytes))])?)
    }
}
