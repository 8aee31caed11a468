//! What ADD does beyond COPY: local tar archives are extracted (compression detected by magic
//! bytes, like Docker; a non-tar stays a file), http(s) URLs are downloaded (`--checksum`
//! verified, mtime from `Last-Modified`, mode 0600). Git sources are refused with a clear error.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::Digest as _;

use crate::layer::root_path::RootDir;
use crate::layer::unpack::{unpack_archive, UnpackError, UnpackOptions};
use crate::sandbox::CancelToken;

/// Errors specific to ADD.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("cannot download {url}")]
    Download {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot download {url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("cannot write the download of {url} to {path}")]
    Write {
        url: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}")]
    ChecksumMismatch { url: String, expected: String, actual: String },
    #[error("invalid --checksum {value:?}: expected sha256:<64 hex>, sha384:<96 hex> or sha512:<128 hex>")]
    ChecksumFormat { value: String },
    #[error("--checksum {reason}")]
    ChecksumUse { reason: &'static str },
    #[error("ADD of a git repository ({source_url}) is not supported; clone it in a RUN step or in the pipeline")]
    Git { source_url: String },
    #[error("COPY cannot fetch a URL ({url}): use ADD")]
    CopyUrl { url: String },
    #[error("ADD --keep-git-dir is not supported (it applies to git sources, which rbuild does not fetch)")]
    KeepGitDir,
    #[error("cannot extract archive {path}")]
    Extract {
        path: PathBuf,
        #[source]
        source: UnpackError,
    },
    #[error("the download of {url} was cancelled")]
    Cancelled { url: String },
}

/// The compression of a local file, from its first bytes (Docker's `DetectCompression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    /// Detects the compression from the magic bytes at the start of a file.
    pub fn sniff(head: &[u8]) -> Self {
        const MAGIC: [(&[u8], Compression); 4] = [
            (&[0x1f, 0x8b, 0x08], Compression::Gzip),
            (b"BZh", Compression::Bzip2),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Compression::Xz),
            (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
        ];
        MAGIC.iter().find(|(m, _)| head.starts_with(m)).map_or(Self::None, |(_, c)| *c)
    }

    /// Wraps `reader` in the matching decompressor.
    pub fn decoder<'r>(self, reader: impl Read + 'r) -> io::Result<Box<dyn Read + 'r>> {
        let reader = BufReader::new(reader);
        Ok(match self {
            Self::None => Box::new(reader),
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Self::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(reader)),
            Self::Xz => Box::new(lzma_rust2::XzReader::new(reader, true)),
            Self::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        })
    }
}

/// The compression of `path` when it is a tar archive (possibly compressed), as Docker's
/// `isArchivePath`: a regular file whose (decompressed) start is a valid tar header.
pub fn archive_compression(path: &Path) -> Option<Compression> {
    let mut file = File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = [0u8; 8];
    let n = file.read(&mut head).ok()?;
    let compression = Compression::sniff(head.get(..n)?);
    let file = File::open(path).ok()?;
    let mut archive = tar::Archive::new(compression.decoder(file).ok()?);
    let first = archive.entries().ok()?.next()?;
    first.ok().map(|_| compression)
}

/// Extracts the archive `path` into the host directory `dest` (created by the caller). The
/// unpacker is the hostile-input-safe one: names with `..` or a leading `/` are refused and
/// symlinks are resolved inside `dest` (Docker extracts in a chroot at the destination).
pub fn extract(path: &Path, compression: Compression, dest: &Path, opts: &UnpackOptions) -> Result<(), AddError> {
    let extract_err = |source| AddError::Extract { path: path.to_path_buf(), source };
    let root =
        RootDir::open(dest).map_err(|e| extract_err(UnpackError::Resolve { path: dest.to_path_buf(), source: e }))?;
    let file = File::open(path).map_err(|source| extract_err(UnpackError::Read { source }))?;
    let reader = compression.decoder(file).map_err(|source| extract_err(UnpackError::Read { source }))?;
    unpack_archive(&root, reader, opts).map_err(extract_err)?;
    Ok(())
}

/// Whether an ADD source is remote (a URL or a git reference) rather than a context path.
pub fn is_remote(src: &str) -> bool {
    is_url(src) || is_git(src)
}

/// http(s) URLs that are not git repositories.
pub fn is_url(src: &str) -> bool {
    (src.starts_with("http://") || src.starts_with("https://")) && !is_git(src)
}

/// Git references as BuildKit's `ParseGitRef` recognises them (`git@`, `git://`, `ssh://`,
/// `github.com/…`, or an http(s) URL whose path ends in `.git`).
pub fn is_git(src: &str) -> bool {
    if ["git@", "git://", "ssh://", "github.com/"].iter().any(|p| src.starts_with(p)) {
        return true;
    }
    let Some(rest) = src.strip_prefix("https://").or_else(|| src.strip_prefix("http://")) else { return false };
    let path = rest.split(['#', '?']).next().unwrap_or_default();
    path.ends_with(".git") || path.contains(".git/")
}

/// The file name a download gets: the last component of the URL path, `__unnamed__` when
/// there is none (as BuildKit).
pub fn url_file_name(url: &str) -> String {
    let parsed = url::Url::parse(url).ok();
    let name = parsed
        .as_ref()
        .and_then(|u| u.path_segments())
        .and_then(|mut s| s.next_back())
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .map(|s| s.to_string());
    name.unwrap_or_else(|| "__unnamed__".into())
}

/// An expected digest from `--checksum`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    algorithm: &'static str,
    hex: String,
}

impl Checksum {
    /// Parses `sha256:<hex>` (also sha384 and sha512, as BuildKit's digest parser).
    pub fn parse(value: &str) -> Result<Self, AddError> {
        let bad = || AddError::ChecksumFormat { value: value.into() };
        let (algorithm, hex) = value.split_once(':').ok_or_else(bad)?;
        let (algorithm, len) = match algorithm {
            "sha256" => ("sha256", 64),
            "sha384" => ("sha384", 96),
            "sha512" => ("sha512", 128),
            _ => return Err(bad()),
        };
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad());
        }
        Ok(Self { algorithm, hex: hex.into() })
    }
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algorithm: &str) -> Self {
        match algorithm {
            "sha384" => Self::Sha384(sha2::Sha384::new()),
            "sha512" => Self::Sha512(sha2::Sha512::new()),
            _ => Self::Sha256(sha2::Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    fn hex(self) -> String {
        match self {
            Self::Sha256(h) => hex::encode(h.finalize()),
            Self::Sha384(h) => hex::encode(h.finalize()),
            Self::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// A downloaded file, in a temporary file until it is placed.
pub struct Download {
    pub file: tempfile::NamedTempFile,
    /// From `Last-Modified`, when the server sent one.
    pub modified: Option<SystemTime>,
}

/// Downloads `url` into a temporary file in `dir`, verifying `checksum` when given.
/// Cancellation is checked between chunks.
pub fn download(
    url: &str,
    checksum: Option<&Checksum>,
    dir: &Path,
    cancel: &CancelToken,
) -> Result<Download, AddError> {
    let net = |source| AddError::Download { url: url.into(), source };
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(None)
        .build()
        .map_err(net)?;
    let mut response = client.get(url).send().map_err(net)?;
    let status = response.status();
    if !status.is_success() {
        return Err(AddError::Status { url: url.into(), status: status.as_u16() });
    }
    let modified = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let write_err = |path: &Path| {
        let (url, path) = (url.to_string(), path.to_path_buf());
        move |source| AddError::Write { url, path, source }
    };
    let mut file = tempfile::Builder::new().prefix("add-").tempfile_in(dir).map_err(write_err(dir))?;
    let mut hasher = Hasher::new(checksum.map_or("sha256", |c| c.algorithm));
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if cancel.is_cancelled() {
            return Err(AddError::Cancelled { url: url.into() });
        }
        let n = response.read(&mut buf).map_err(write_err(file.path()))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { break };
        hasher.update(chunk);
        file.write_all(chunk).map_err(write_err(file.path()))?;
    }
    file.flush().map_err(write_err(file.path()))?;
    if let Some(expected) = checksum {
        let actual = hasher.hex();
        if actual != expected.hex {
            return Err(AddError::ChecksumMismatch {
                url: url.into(),
                expected: format!("{}:{}", expected.algorithm, expected.hex),
                actual: format!("{}:{actual}", expected.algorithm),
            });
        }
    }
    Ok(Download { file, modified })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case("https://example.com/a/b.tar.gz", true, false)]
    #[case("http://example.com/", true, false)]
    #[case("https://github.com/o/r.git", false, true)]
    #[case("https://host/o/r.git#main", false, true)]
    #[case("git@github.com:o/r.git", false, true)]
    #[case("github.com/o/r", false, true)]
    #[case("src/app.tar", false, false)]
    fn classifies_remote_sources(#[case] src: &str, #[case] url: bool, #[case] git: bool) {
        assert_eq!((is_url(src), is_git(src)), (url, git));
    }

    #[rstest::rstest]
    #[case("https://example.com/a/b.tar.gz?x=1", "b.tar.gz")]
    #[case("https://example.com/", "__unnamed__")]
    #[case("https://example.com", "__unnamed__")]
    #[case("https://example.com/dir/", "__unnamed__")]
    fn names_downloads(#[case] url: &str, #[case] want: &str) {
        assert_eq!(url_file_name(url), want);
    }

    #[rstest::rstest]
    #[case(&[0x1f, 0x8b, 0x08, 0], Compression::Gzip)]
    #[case(b"BZh91AY", Compression::Bzip2)]
    #[case(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1], Compression::Xz)]
    #[case(&[0x28, 0xb5, 0x2f, 0xfd, 1], Compression::Zstd)]
    #[case(b"hello", Compression::None)]
    fn sniffs_compression(#[case] head: &[u8], #[case] want: Compression) {
        assert_eq!(Compression::sniff(head), want);
    }

    #[rstest::rstest]
    #[case("sha256:", false)]
    #[case("md5:d41d8cd98f00b204e9800998ecf8427e", false)]
    #[case("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", true)]
    #[case("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", false)]
    fn parses_checksums(#[case] value: &str, #[case] ok: bool) {
        assert_eq!(Checksum::parse(value).is_ok(), ok);
    }
}
