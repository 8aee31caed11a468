//! Digest checks on the way out of the blob store: a reader that hashes what passes through
//! and fails at the end of its input when the bytes do not match the digest they are stored
//! under. Layer blobs are checked against their digest and, decompressed, against their
//! diff_id while they are unpacked or copied into an output, so a bit flipped on disk (or a
//! base whose config lies about its diff_ids) never reaches a root, an image or an output.

use std::io::{self, Read};
use std::path::Path;

use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};

use super::exclusions::Exclusions;
use super::root_path::RootDir;
use super::unpack::{decompress, unpack_layer_excluding, UnpackError, UnpackOptions, UnpackStats};
use super::Codec;

/// Applies the stored layer `blob` (compressed as `codec`) to `root`, checking the blob
/// against `digest` and its tar against `diff_id` as it streams; a mismatch fails the unpack.
pub fn unpack_verified(
    root: &RootDir,
    blob: &Path,
    (codec, digest, diff_id): (Codec, &Digest, &Digest),
    opts: &UnpackOptions,
    excluded: &Exclusions,
) -> Result<UnpackStats, UnpackError> {
    let read = |source| UnpackError::Read { source };
    let file =
        std::fs::File::open(blob).map_err(|source| UnpackError::Io { op: "open", path: blob.to_path_buf(), source })?;
    let compressed = VerifyingReader::new(io::BufReader::new(file), digest, format!("layer blob {digest}"));
    let tar = decompress(codec, compressed).map_err(read)?;
    let mut tar = VerifyingReader::new(tar, diff_id, format!("layer {digest} (diff_id)"));
    let stats = unpack_layer_excluding(root, Codec::None, &mut tar, opts, excluded)?;
    tar.finish().map_err(read)?;
    Ok(stats)
}

/// A blob whose bytes do not hash to what they are stored under.
#[derive(Debug, thiserror::Error)]
#[error("{what} does not match its digest: expected {expected}, got sha256:{actual}")]
pub struct DigestMismatch {
    /// What was read ("layer blob sha256:…", "layer sha256:… (diff_id)").
    pub what: String,
    /// The digest it is stored or listed under.
    pub expected: Digest,
    /// Hex of what the bytes hash to.
    pub actual: String,
}

/// Hashes what is read through it; the read that reaches the end of `inner` fails with
/// [`io::ErrorKind::InvalidData`] (carrying a [`DigestMismatch`]) on a mismatch. Digests of
/// other algorithms than sha256 are passed through unchecked.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Sha256>,
    expected: Digest,
    what: String,
}

impl<R: Read> VerifyingReader<R> {
    /// Check `inner` against `expected`; `what` names it in the error.
    pub fn new(inner: R, expected: &Digest, what: impl Into<String>) -> Self {
        let sha256 = expected.algorithm().as_ref() == "sha256";
        Self { inner, hasher: sha256.then(Sha256::new), expected: expected.clone(), what: what.into() }
    }

    /// Read the rest of the input (a tar reader stops at the end-of-archive blocks, before
    /// any padding the digest covers) and check it.
    pub fn finish(mut self) -> io::Result<()> {
        io::copy(&mut self, &mut io::sink()).map(|_| ())
    }

    fn check(&mut self) -> io::Result<()> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        let actual = hex::encode(hasher.finalize());
        if actual == self.expected.digest() {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            DigestMismatch { what: self.what.clone(), expected: self.expected.clone(), actual },
        ))
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match (&mut self.hasher, n) {
            (Some(_), 0) if !buf.is_empty() => self.check().map(|()| 0),
            (Some(h), n) => {
                h.update(&buf[..n]);
                Ok(n)
            }
            (None, n) => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(bytes: &[u8]) -> Digest {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes))).parse().unwrap()
    }

    #[test]
    fn matching_bytes_pass_and_flipped_bytes_fail_at_the_end() {
        let good = b"layer bytes".to_vec();
        let mut out = Vec::new();
        VerifyingReader::new(good.as_slice(), &digest_of(&good), "blob").read_to_end(&mut out).unwrap();
        assert_eq!(out, good);
        let mut bad = good.clone();
        bad[3] ^= 1;
        let err = VerifyingReader::new(bad.as_slice(), &digest_of(&good), "layer blob x")
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("layer blob x does not match its digest"), "{err}");
    }

    #[test]
    fn finish_reads_what_a_consumer_left() {
        let bytes = vec![7u8; 10_000];
        let mut r = VerifyingReader::new(bytes.as_slice(), &digest_of(&bytes), "blob");
        let mut head = [0u8; 100];
        r.read_exact(&mut head).unwrap();
        r.finish().unwrap();
        let mut r = VerifyingReader::new(bytes.as_slice(), &digest_of(b"other"), "blob");
        r.read_exact(&mut head).unwrap();
        assert!(r.finish().is_err());
    }
}
