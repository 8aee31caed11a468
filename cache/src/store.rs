//! The local content-addressed blob store.
//!
//! Blobs live at `<root>/blobs/sha256/<hex>`, the OCI image layout, so a store directory is
//! also the blob half of an OCI layout and can be shared as `--cache-dir`. Writes go to a
//! temporary file in the same directory, are hashed while written, verified (digest and size),
//! fsynced and renamed into place. Renames are atomic, and two processes writing the same blob
//! both succeed: the content is identical by construction, so whichever rename lands last wins
//! with the same bytes.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use crate::oci::{digest_from_hash, Digest, DigestAlgorithm};

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store directory could not be created or opened.
    #[error("cannot open blob store at {path}")]
    Open {
        /// Store root.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Reading or writing a blob failed.
    #[error("blob store i/o on {path}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The written content does not match the digest it was expected to have.
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Expected digest.
        expected: Digest,
        /// Digest of the bytes actually written.
        actual: Digest,
    },
    /// The written content does not have the expected size.
    #[error("blob {digest} size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// Digest of the blob.
        digest: Digest,
        /// Expected size.
        expected: u64,
        /// Bytes actually written.
        actual: u64,
    },
    /// Only sha256 blobs are stored.
    #[error("unsupported digest algorithm in {digest}")]
    UnsupportedAlgorithm {
        /// The digest.
        digest: Digest,
    },
    /// The blob is not in the store.
    #[error("blob {digest} is not in the store")]
    NotFound {
        /// The digest.
        digest: Digest,
    },
}

/// A blob that has been committed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// A content-addressed blob directory (`<root>/blobs/sha256/<hex>`).
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    sha256_dir: PathBuf,
}

impl BlobStore {
    /// Open (and create if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let sha256_dir = root.join("blobs").join("sha256");
        fs::create_dir_all(&sha256_dir).map_err(|source| StoreError::Open { path: root.clone(), source })?;
        Ok(Self { root, sha256_dir })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it exists yet).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.algorithm().as_ref()).join(digest.digest())
    }

    /// Whether the blob is present.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Size of a stored blob, if present.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.path(digest)).ok().map(|m| m.len())
    }

    /// Open a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.path(digest);
        File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound { digest: digest.clone() },
            _ => StoreError::Io { path, source },
        })
    }

    /// Read a whole (small) blob, such as a manifest or config, into memory.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .map_err(|source| StoreError::Io { path: self.path(digest), source })?;
        Ok(bytes)
    }

    /// Start writing a new blob; hash while writing, then [`BlobWriter::commit`].
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        let file = NamedTempFile::with_prefix_in(crate::state::temp_file_prefix(), &self.sha256_dir)
            .map_err(|source| StoreError::Io { path: self.sha256_dir.clone(), source })?;
        Ok(BlobWriter { store: self.clone(), file, hasher: Sha256::new(), written: 0 })
    }

    /// Store a whole byte slice (a manifest, a config).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<StoredBlob, StoreError> {
        let mut writer = self.writer()?;
        writer.write_all(bytes).map_err(|source| StoreError::Io { path: writer.file.path().to_path_buf(), source })?;
        writer.commit(None, None)
    }

    /// Copy a file into the store, hashing it on the way.
    pub fn ingest_file(&self, path: &Path) -> Result<StoredBlob, StoreError> {
        let io_err = |source| StoreError::Io { path: path.to_path_buf(), source };
        let mut source = File::open(path).map_err(io_err)?;
        let mut writer = self.writer()?;
        io::copy(&mut source, &mut writer).map_err(io_err)?;
        writer.commit(None, None)
    }
}

/// A blob being written: hashes every byte, lands in the store only on [`commit`](Self::commit).
///
/// Dropping it without committing removes the temporary file.
#[derive(Debug)]
pub struct BlobWriter {
    store: BlobStore,
    file: NamedTempFile,
    hasher: Sha256,
    written: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verify against `expected` digest and size (when given), fsync, and move into place.
    pub fn commit(self, expected: Option<&Digest>, expected_size: Option<u64>) -> Result<StoredBlob, StoreError> {
        let actual = digest_from_hash(&self.hasher.finalize());
        if let Some(expected) = expected {
            if *expected.algorithm() != DigestAlgorithm::Sha256 {
                return Err(StoreError::UnsupportedAlgorithm { digest: expected.clone() });
            }
            if *expected != actual {
                return Err(StoreError::DigestMismatch { expected: expected.clone(), actual });
            }
        }
        if let Some(size) = expected_size.filter(|s| *s != self.written) {
            return Err(StoreError::SizeMismatch { digest: actual, expected: size, actual: self.written });
        }
        let tmp_path = self.file.path().to_path_buf();
        let io_err = |source| StoreError::Io { path: tmp_path.clone(), source };
        self.file.as_file().sync_all().map_err(io_err)?;
        let target = self.store.path(&actual);
        // `persist` is a rename(2) in the same directory: atomic, and replacing an identical
        // blob written concurrently by another process is harmless.
        self.file.persist(&target).map_err(|e| StoreError::Io { path: target.clone(), source: e.error })?;
        tracing::debug!(digest = %actual, size = self.written, "blob committed");
        Ok(StoredBlob { digest: actual, size: self.written })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        // Hash exactly what reached the file; `n` never exceeds `buf.len()`.
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::sha256_digest;

    #[test]
    fn write_verify_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data = b"hello blob";
        let expected = sha256_digest(data);
        let mut w = store.writer().unwrap();
        w.write_all(data).unwrap();
        let blob = w.commit(Some(&expected), Some(data.len() as u64)).unwrap();
        assert_eq!(blob.digest, expected);
        assert!(store.contains(&expected));
        assert_eq!(store.read_blob(&expected).unwrap(), data);
        assert_eq!(store.path(&expected), dir.path().join("blobs/sha256").join(expected.digest()));
    }

    #[test]
    fn mismatches_are_rejected_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let wrong = sha256_digest(b"other");
        let mut w = store.writer().unwrap();
        w.write_all(b"data").unwrap();
        assert!(matches!(w.commit(Some(&wrong), None), Err(StoreError::DigestMismatch { .. })));
        let mut w = store.writer().unwrap();
        w.write_all(b"data").unwrap();
        assert!(matches!(w.commit(None, Some(3)), Err(StoreError::SizeMismatch { .. })));
        let left = fs::read_dir(dir.path().join("blobs/sha256")).unwrap().count();
        assert_eq!(left, 0, "temp files are removed on failure");
    }

    #[test]
    fn concurrent_writers_of_the_same_blob_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = sha256_digest(&data);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    // Each thread opens its own handle, as separate processes would.
                    let store = BlobStore::open(dir.path()).unwrap();
                    let mut w = store.writer().unwrap();
                    for chunk in data.chunks(4096) {
                        w.write_all(chunk).unwrap();
                    }
                    w.commit(Some(&expected), None).unwrap();
                });
            }
        });
        let store = BlobStore::open(dir.path()).unwrap();
        assert_eq!(store.read_blob(&expected).unwrap(), data);
    }
}
