//! The node's Ed25519 identity: one key pair, kept in the data dir with mode 0600, from which
//! the libp2p PeerId and the `did:key` derive.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use allmende_protocol::PeerId;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};

/// File name of the secret key inside the data dir.
pub const KEY_FILE: &str = "node.key";

/// Errors creating or loading the identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A key file is already there; it is never overwritten.
    #[error("a key already exists at `{0}`; it is kept and never overwritten")]
    Exists(PathBuf),
    /// The key file could not be read or written.
    #[error("cannot access key file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file does not hold a PKCS#8 Ed25519 key.
    #[error("key file `{0}` does not hold a PKCS#8 PEM Ed25519 private key")]
    Malformed(PathBuf),
    /// The key file can be read by others.
    #[error(
        "key file `{path}` has mode {mode:o}; it must be readable by its owner only (chmod 600)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
}

/// The node's key pair and the identifiers derived from it.
pub struct Identity {
    key: SigningKey,
    peer_id: PeerId,
    did: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Identity {
    fn from_key(key: SigningKey) -> Self {
        let public = key.verifying_key();
        Self {
            peer_id: allmende_protocol::peer_id_of(&public),
            did: allmende_protocol::did_key_of(&public),
            key,
        }
    }

    /// Makes a new key pair and writes it to `data_dir/node.key` with mode 0600; fails if a
    /// key file exists.
    pub fn create(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = data_dir.join(KEY_FILE);
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        let key = SigningKey::from_bytes(&seed);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| IdentityError::Malformed(path.clone()))?;
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(IdentityError::Exists(path));
            }
            Err(e) => return Err(io(e)),
        };
        file.write_all(pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self::from_key(key))
    }

    /// Loads the key pair from `data_dir/node.key`, refusing a file others can read.
    pub fn load(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions { path, mode });
        }
        let pem = std::fs::read_to_string(&path).map_err(io)?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|_| IdentityError::Malformed(path))?;
        Ok(Self::from_key(key))
    }

    /// The libp2p PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The `did:key` identifier.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// The signing key, for envelopes.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_gives_the_same_identity_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let created = Identity::create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = Identity::load(dir.path()).unwrap();
        assert_eq!(created.peer_id(), loaded.peer_id());
        assert!(loaded.did().starts_with("did:key:z6Mk"), "{}", loaded.did());
        let before = std::fs::read(dir.path().join(KEY_FILE)).unwrap();
        assert!(matches!(
            Identity::create(dir.path()),
            Err(IdentityError::Exists(_))
        ));
        assert_eq!(std::fs::read(dir.path().join(KEY_FILE)).unwrap(), before);
    }

    #[test]
    fn refuses_a_world_readable_key() {
        let dir = tempfile::tempdir().unwrap();
        Identity::create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::Permissions { .. })
        ));
    }
}
