//! Who may call what: the roles, and the table of every route with the role it needs.

use std::fmt;

use axum::http::Method;
use serde::{Deserialize, Serialize};

/// The roles a principal can hold. `admin` includes every other role; `steward` and
/// `researcher` include `viewer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read the node's datasets, metadata and federation status.
    Viewer,
    /// Run SQL and federated queries.
    Researcher,
    /// Publish, change and withdraw datasets; set usage policies.
    Steward,
    /// Node and federation settings.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Researcher, Role::Steward, Role::Admin];

    /// The role's name as used in configuration and tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Researcher => "researcher",
            Role::Steward => "steward",
            Role::Admin => "admin",
        }
    }

    /// The role named `name`, if any.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether holding `self` grants `needed`.
    pub fn grants(self, needed: Role) -> bool {
        self == needed || self == Role::Admin || needed == Role::Viewer
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token.
    Public,
    /// A principal holding (or including) this role.
    Role(Role),
}

use Access::Public;
use Role::{Admin, Researcher, Steward, Viewer};

const fn r(role: Role) -> Access {
    Access::Role(role)
}

/// Every route of the API with the access it needs: `(method, path template, access)`. The
/// path templates are axum's (`{id}`). `HEAD` is treated as `GET`. A route missing here needs
/// `admin`, so add new routes here.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/api/v1/catalog", Public),
    ("GET", "/auth/login", Public),
    ("GET", "/auth/callback", Public),
    ("GET", "/api/v1/node", r(Viewer)),
    ("GET", "/metrics", r(Viewer)),
    ("GET", "/api/v1/datasets", r(Viewer)),
    ("POST", "/api/v1/datasets", r(Steward)),
    ("GET", "/api/v1/datasets/{id}", r(Viewer)),
    ("PATCH", "/api/v1/datasets/{id}", r(Steward)),
    ("PUT", "/api/v1/datasets/{id}", r(Steward)),
    ("DELETE", "/api/v1/datasets/{id}", r(Steward)),
    ("POST", "/api/v1/datasets/{id}/versions", r(Steward)),
    ("GET", "/api/v1/datasets/{id}/schema", r(Viewer)),
    ("GET", "/api/v1/datasets/{id}/validation", r(Viewer)),
    ("GET", "/api/v1/datasets/{id}/data", r(Viewer)),
    ("POST", "/api/v1/datasets/{id}/publish", r(Steward)),
    ("POST", "/api/v1/datasets/{id}/withdraw", r(Steward)),
    ("GET", "/api/v1/datasets/{id}/policy", r(Viewer)),
    ("PUT", "/api/v1/datasets/{id}/policy", r(Steward)),
    ("GET", "/api/v1/agreements", r(Viewer)),
    ("POST", "/api/v1/agreements", r(Steward)),
    ("POST", "/api/v1/agreements/{id}/revoke", r(Steward)),
    ("GET", "/api/v1/audit", r(Steward)),
    ("GET", "/api/v1/audit/verify", r(Steward)),
    ("GET", "/api/v1/audit/entries", r(Steward)),
    ("POST", "/api/v1/sql", r(Researcher)),
    ("POST", "/api/v1/query", r(Researcher)),
    ("GET", "/api/v1/transfers", r(Researcher)),
    ("POST", "/api/v1/transfers", r(Researcher)),
    ("GET", "/api/v1/transfers/{id}", r(Researcher)),
    ("DELETE", "/api/v1/transfers/{id}", r(Researcher)),
    ("POST", "/api/v1/transfers/{id}/resume", r(Researcher)),
    ("GET", "/api/v1/transfers/{id}/data", r(Researcher)),
    ("GET", "/api/v1/federation", r(Viewer)),
    ("GET", "/api/v1/federation/card", r(Viewer)),
    ("POST", "/api/v1/federation", r(Admin)),
    ("POST", "/api/v1/federation/sign", r(Admin)),
    ("POST", "/api/v1/federation/apply", r(Admin)),
    ("POST", "/api/v1/federation/proposals", r(Admin)),
    ("POST", "/api/v1/federation/leave", r(Admin)),
];

/// The access `method path` needs according to [`ROUTES`]; `None` if the table has no entry.
pub fn required(method: &Method, path: &str) -> Option<Access> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, access)| *access)
}
