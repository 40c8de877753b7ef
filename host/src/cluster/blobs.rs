//! Pushed plugins as files on this host: the engine and the reloader read plugins from files,
//! so each blob fetched from the shared store is written once under its sha256 (atomically:
//! a temporary file renamed into place) and checked against that sha256 whenever it is used,
//! so a file changed on disk is fetched again rather than run.

use crate::runtime::sha256_hex;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory of plugin files named by their sha256.
#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: PathBuf,
}

static NEXT_TEMPORARY: AtomicU64 = AtomicU64::new(0);

impl BlobCache {
    /// The cache in `dir` (created when the first blob is written).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The default place: a directory of this user's under the system's temporary directory,
    /// shared by the hosts of one machine (the files are content-addressed).
    pub fn default_dir() -> PathBuf {
        std::env::temp_dir().join("tsunagi-pushed-plugins")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `sha256` lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.wasm"))
    }

    /// The file of blob `sha256` if it is here with the right content.
    pub fn cached(&self, sha256: &str) -> Option<PathBuf> {
        let path = self.path(sha256);
        let bytes = crate::runtime::read_plugin(&path).ok()?;
        (sha256_hex(&bytes) == sha256).then_some(path)
    }

    /// Writes `bytes` as blob `sha256` (which they must hash to) and answers its file.
    pub fn write(&self, sha256: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        if sha256_hex(bytes) != sha256 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the bytes of blob {sha256} hash to {}", sha256_hex(bytes)),
            ));
        }
        create_private_dir(&self.dir)?;
        let path = self.path(sha256);
        let temporary = self.dir.join(format!(
            ".{sha256}.{}.{}",
            std::process::id(),
            NEXT_TEMPORARY.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })?;
        Ok(path)
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_written_once_and_a_changed_file_is_not_served() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let cache = BlobCache::new(dir.path().join("blobs"));
        let bytes = b"\0asm component stand-in".to_vec();
        let sha256 = sha256_hex(&bytes);
        assert_eq!(cache.cached(&sha256), None);
        let path = cache.write(&sha256, &bytes).expect("written");
        assert_eq!(cache.cached(&sha256), Some(path.clone()));
        std::fs::write(&path, b"tampered").expect("overwritten");
        assert_eq!(
            cache.cached(&sha256),
            None,
            "a changed file is fetched again"
        );
        let wrong = cache
            .write(&"0".repeat(64), &bytes)
            .expect_err("wrong sha256");
        assert!(wrong.to_string().contains(&sha256), "{wrong}");
    }
}
