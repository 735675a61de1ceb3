//! This HOME's long-term key pair: an Ed25519 key created on first use in `HOME/peer.key`
//! (PKCS#8, mode 0600 from the moment it exists). Its public half is the peer's identity on the
//! piece channel (docs/PROTOCOL.md, "The channel"): the daemon announces it to the tracker with
//! its address, a sharer proves it in every TLS handshake, and the tracker binds a downloader's
//! tickets to it.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ring::signature::{Ed25519KeyPair, KeyPair};

/// The key file's name in HOME.
pub const KEY_FILE: &str = "peer.key";

/// A HOME's key pair.
pub struct PeerIdentity {
    pkcs8: Vec<u8>,
    public: [u8; 32],
}

impl std::fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private half.
        f.debug_struct("PeerIdentity").field("public", &self.public_hex()).finish()
    }
}

impl PeerIdentity {
    /// The key of `home`, created there first if it has none. An existing key file must be a
    /// regular file (not a symlink), owned by this user and private to it.
    pub fn load_or_create(home: &Path) -> anyhow::Result<Self> {
        let path = home.join(KEY_FILE);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => Self::load(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(&path),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn create(path: &PathBuf) -> anyhow::Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow::anyhow!("cannot generate a key pair"))?;
        // Exclusive, not through a symlink, 0600 from the start; written in full before rename so
        // a crash leaves no half key under the real name.
        crate::home::write_private(path, doc.as_ref())?;
        tracing::info!(file = %path.display(), "created this peer's key pair");
        Self::from_pkcs8(doc.as_ref().to_vec())
    }

    fn load(path: &Path) -> anyhow::Result<Self> {
        let f =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).with_context(|| {
                format!("cannot open {} (it must be a regular file, not a symlink)", path.display())
            })?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            bail!("{} is not a regular file", path.display());
        }
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if meta.uid() != uid {
            bail!("{} belongs to uid {}, not to this user (uid {uid})", path.display(), meta.uid());
        }
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} can be read by other users (mode {:o}); run: chmod 600 {}",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            );
        }
        let der = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_pkcs8(der).with_context(|| format!("{} is not an Ed25519 key", path.display()))
    }

    fn from_pkcs8(pkcs8: Vec<u8>) -> anyhow::Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {e}"))?;
        let public: [u8; 32] = pair.public_key().as_ref().try_into().context("public key of 32 bytes")?;
        Ok(PeerIdentity { pkcs8, public })
    }

    /// A fresh key that lives only in memory (tests, and tools that play a peer).
    pub fn ephemeral() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system RNG works");
        Self::from_pkcs8(doc.as_ref().to_vec()).expect("a key ring just made")
    }

    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The public key as the tracker records it: 64 lowercase hex characters.
    pub fn public_hex(&self) -> String {
        hex::encode(self.public)
    }

    pub(crate) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_private_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let a = PeerIdentity::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = PeerIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public(), b.public());
        assert!(!format!("{a:?}").contains(&hex::encode(a.pkcs8())));
    }

    #[test]
    fn a_key_others_can_read_or_a_symlinked_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        PeerIdentity::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = PeerIdentity::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");

        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&path, other.path().join(KEY_FILE)).unwrap();
        let e = format!("{:#}", PeerIdentity::load_or_create(other.path()).unwrap_err());
        assert!(e.contains("symlink"), "{e}");
    }
}
