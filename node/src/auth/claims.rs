//! Roles and organisation from token claims, by configurable claim paths such as Keycloak's
//! `realm_access.roles` (dot-separated object keys).
//!
//! The claim may hold an array of strings or one space-separated string (like `scope`). Without
//! `auth.role_mapping`, the values `admin`, `steward`, `researcher` and `viewer` are the roles;
//! with it, only mapped values count (`"city-admins" = "admin"`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{AuthError, Role};
use crate::config::AuthConfig;

/// How roles and the organisation are read from claims.
#[derive(Clone, Debug)]
pub struct ClaimRules {
    roles_path: Vec<String>,
    organisation_path: Option<Vec<String>>,
    mapping: BTreeMap<String, Role>,
}

fn split(path: &str) -> Vec<String> {
    path.split('.').map(str::to_owned).collect()
}

impl ClaimRules {
    /// The rules of an `[auth]` section; unknown role names in the mapping are an error.
    pub fn new(config: &AuthConfig) -> Result<Self, AuthError> {
        let mut mapping = BTreeMap::new();
        for (claim_value, role) in &config.role_mapping {
            let role = Role::parse(role).ok_or_else(|| {
                AuthError::Config(format!(
                    "auth.role_mapping maps `{claim_value}` to `{role}`, which is not a role \
                     (admin, steward, researcher, viewer)"
                ))
            })?;
            mapping.insert(claim_value.clone(), role);
        }
        if config.roles_claim.trim().is_empty() {
            return Err(AuthError::Config(
                "auth.roles_claim must not be empty".into(),
            ));
        }
        Ok(Self {
            roles_path: split(&config.roles_claim),
            organisation_path: config.organisation_claim.as_deref().map(split),
            mapping,
        })
    }

    /// The roles the claims grant.
    pub fn roles(&self, claims: &Value) -> BTreeSet<Role> {
        strings(lookup(claims, &self.roles_path))
            .into_iter()
            .filter_map(|v| {
                if self.mapping.is_empty() {
                    Role::parse(v)
                } else {
                    self.mapping.get(v).copied()
                }
            })
            .collect()
    }

    /// The organisation the claims name, if the rules have an organisation claim and it is a
    /// non-empty string.
    pub fn organisation(&self, claims: &Value) -> Option<String> {
        let path = self.organisation_path.as_ref()?;
        lookup(claims, path)?
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
    }
}

/// The value at `path` inside `claims`.
pub fn lookup<'a>(claims: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(claims, |v, key| v.get(key))
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => s.split_whitespace().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(claim: &str, mapping: &[(&str, &str)]) -> ClaimRules {
        let config = AuthConfig {
            roles_claim: claim.into(),
            organisation_claim: Some("org".into()),
            role_mapping: mapping
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..AuthConfig::default()
        };
        ClaimRules::new(&config).unwrap()
    }

    #[test]
    fn reads_nested_arrays_and_space_separated_strings() {
        let claims = json!({
            "realm_access": { "roles": ["viewer", "offline_access", "steward"] },
            "scope": "openid researcher",
            "org": "Stadt Münster",
        });
        let r = rules("realm_access.roles", &[]);
        assert_eq!(
            r.roles(&claims),
            BTreeSet::from([Role::Viewer, Role::Steward])
        );
        assert_eq!(r.organisation(&claims).as_deref(), Some("Stadt Münster"));
        assert_eq!(
            rules("scope", &[]).roles(&claims),
            BTreeSet::from([Role::Researcher])
        );
        assert!(rules("missing.path", &[]).roles(&claims).is_empty());
    }

    #[test]
    fn a_mapping_replaces_the_plain_names() {
        let claims = json!({ "groups": ["city-admins", "admin"] });
        let r = rules("groups", &[("city-admins", "steward")]);
        assert_eq!(r.roles(&claims), BTreeSet::from([Role::Steward]));
        let bad = AuthConfig {
            role_mapping: [("x".to_string(), "root".to_string())].into(),
            ..AuthConfig::default()
        };
        assert!(ClaimRules::new(&bad).is_err());
    }
}
