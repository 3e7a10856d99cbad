//! The local admin token: `allmende init` makes a random token, prints it once and writes
//! - `DATA_DIR/admin.token.sha256`: its SHA-256, the only thing the node reads (mode 0600);
//! - `DATA_DIR/admin.token`: the token itself for the CLI on the same machine (mode 0600).
//!   Delete it if the CLI should use `ALLMENDE_TOKEN` only; the node never reads it.
//!
//! Tokens start with [`PREFIX`], so the node tells them from JWTs without parsing. They are
//! compared by hash in constant time.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthError;

/// Every local token starts with this.
pub const PREFIX: &str = "allmende_";
/// The token for the CLI, inside the data dir.
pub const TOKEN_FILE: &str = "admin.token";
/// The token's SHA-256 (hex), inside the data dir.
pub const HASH_FILE: &str = "admin.token.sha256";
/// The environment variable the CLI (and `init`) take a token from.
pub const TOKEN_ENV: &str = "ALLMENDE_TOKEN";
/// Shortest token `init` accepts from the environment.
pub const MIN_LEN: usize = 32;

/// A secret token; `Debug` and `Display` print it redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct LocalToken(String);

impl LocalToken {
    /// A new random token: the prefix and 32 random bytes, base64url.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        Self(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// A token chosen by the operator; it must start with the prefix and be long enough.
    pub fn from_chosen(token: &str) -> Result<Self, AuthError> {
        let token = token.trim();
        if !token.starts_with(PREFIX)
            || token.len() < MIN_LEN
            || token.contains(char::is_whitespace)
        {
            return Err(AuthError::Config(format!(
                "a local token must start with `{PREFIX}`, be at least {MIN_LEN} characters long \
                 and contain no spaces"
            )));
        }
        Ok(Self(token.to_owned()))
    }

    /// The token itself, to print once or send.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LocalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalToken(<redacted>)")
    }
}

/// The SHA-256 of a local token.
#[derive(Clone)]
pub struct TokenHash([u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `presented` is the token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let other = Self::of(presented);
        bool::from(self.0.ct_eq(&other.0))
    }

    /// Reads `DATA_DIR/admin.token.sha256`, if it exists.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, AuthError> {
        let path = data_dir.join(HASH_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(AuthError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let bytes = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                AuthError::Config(format!("`{}` is not a hex SHA-256", path.display()))
            })?;
        Ok(Some(Self(bytes)))
    }
}

/// Makes the node's local admin token (random, or `chosen`), writes its hash and the CLI's
/// token file into `data_dir` (both mode 0600, never overwriting) and returns it.
pub fn create(data_dir: &Path, chosen: Option<&str>) -> Result<LocalToken, AuthError> {
    let token = match chosen {
        Some(t) => LocalToken::from_chosen(t)?,
        None => LocalToken::generate(),
    };
    let hash = hex::encode(TokenHash::of(token.reveal()).0);
    write_new(&data_dir.join(HASH_FILE), format!("{hash}\n").as_bytes())?;
    write_new(
        &data_dir.join(TOKEN_FILE),
        format!("{}\n", token.reveal()).as_bytes(),
    )?;
    Ok(token)
}

fn write_new(path: &PathBuf, bytes: &[u8]) -> Result<(), AuthError> {
    let io = |source| AuthError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io)
}

/// The token the CLI sends: `ALLMENDE_TOKEN`, else `DATA_DIR/admin.token` if it exists.
pub fn for_cli(data_dir: &Path) -> Option<String> {
    if let Ok(t) = std::env::var(TOKEN_ENV) {
        let t = t.trim();
        if !t.is_empty() {
            return Some(t.to_owned());
        }
    }
    let text = std::fs::read_to_string(data_dir.join(TOKEN_FILE)).ok()?;
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn create_writes_private_files_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let token = create(dir.path(), None).unwrap();
        assert!(token.reveal().starts_with(PREFIX));
        assert!(token.reveal().len() >= MIN_LEN);
        for f in [TOKEN_FILE, HASH_FILE] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let hash = TokenHash::load(dir.path()).unwrap().unwrap();
        assert!(hash.matches(token.reveal()));
        assert!(!hash.matches("allmende_wrong"));
        let stored = std::fs::read_to_string(dir.path().join(HASH_FILE)).unwrap();
        assert!(!stored.contains(token.reveal()));
        assert!(create(dir.path(), None).is_err());
        assert!(!format!("{token:?}").contains(token.reveal()));
    }

    #[test]
    fn chosen_tokens_must_be_long_and_prefixed() {
        assert!(LocalToken::from_chosen("allmende_short").is_err());
        assert!(LocalToken::from_chosen("x".repeat(40).as_str()).is_err());
        assert!(LocalToken::from_chosen("allmende_0123456789abcdef0123456789").is_ok());
    }
}
