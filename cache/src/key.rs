//! Cache keys: key(n) = sha256 of the step's [`KeyComponents`] (which include key(n-1)).
//!
//! The components are plain data, serialised canonically (fields in declaration order,
//! `BTreeMap`s), so the same inputs give the same key on any machine. They are stored with
//! each cache entry so that `--explain-cache` can say which component changed.
//! Build-arg values enter as sha256 digests: an entry in a shared registry never carries a
//! value that someone passed as a build arg.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::oci::Digest;

/// Bumped whenever the key derivation or the entry format changes: old entries then miss.
pub const CACHE_FORMAT_VERSION: u32 = 1;

/// A cache key: `sha256:<64 hex>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CacheKey(String);

impl CacheKey {
    /// key(0) of a stage built from an image: its resolved manifest digest.
    pub fn base_image(manifest: &Digest) -> Self {
        Self(manifest.to_string())
    }

    /// key(0) of a stage built `FROM scratch`.
    pub fn scratch() -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(b"rbuild scratch"))))
    }

    /// The registry tag of the entry with this key (`sha256-<hex>`, 71 characters, below
    /// the 128-character tag limit).
    pub fn tag(&self) -> String {
        self.0.replacen(':', "-", 1)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for CacheKey {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// Everything a step's key is made of.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyComponents {
    /// [`CACHE_FORMAT_VERSION`].
    pub format: u32,
    /// key(n-1): the previous step's key, or the stage's key(0).
    pub parent: CacheKey,
    /// The instruction after variable expansion (canonical JSON of the typed instruction).
    pub instruction: String,
    /// Build args the step declares and can see: name → sha256 of the value.
    pub args: BTreeMap<String, String>,
    /// The platform the stage is built for (`linux/amd64`).
    pub platform: String,
    /// Digest of the selected sources (content and metadata after `.dockerignore`) of a
    /// COPY/ADD from the context or of a RUN bind mount from the context.
    pub sources: Option<String>,
    /// Stages read by `--from` (COPY, RUN mounts) → their final key.
    pub stages: BTreeMap<String, CacheKey>,
    /// RUN mounts' identity (type, id, target, source; never a secret's content).
    pub mounts: Vec<String>,
    /// How layers are written (codec, mtime policy): a layer made one way is not reused for
    /// a build asking for another.
    pub output: String,
}

/// A component that differs between two [`KeyComponents`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    Format,
    /// The previous step (or the base image) changed.
    Parent,
    Instruction,
    /// These build args were added, removed or changed value.
    Args(Vec<String>),
    Platform,
    Sources,
    /// These `--from` stages changed.
    Stages(Vec<String>),
    Mounts,
    Output,
}

impl fmt::Display for Changed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Changed::Format => f.write_str("cache format version"),
            Changed::Parent => f.write_str("previous step or base image"),
            Changed::Instruction => f.write_str("instruction"),
            Changed::Args(names) => write!(f, "build args {}", names.join(", ")),
            Changed::Platform => f.write_str("platform"),
            Changed::Sources => f.write_str("source files"),
            Changed::Stages(names) => write!(f, "--from stages {}", names.join(", ")),
            Changed::Mounts => f.write_str("RUN mounts"),
            Changed::Output => f.write_str("layer options"),
        }
    }
}

impl KeyComponents {
    /// The key: sha256 of the canonical JSON of the components.
    pub fn key(&self) -> CacheKey {
        // Invariant: only strings, integers and string maps, which always serialise.
        let json = serde_json::to_vec(self).expect("key components serialise");
        CacheKey(format!("sha256:{}", hex::encode(Sha256::digest(&json))))
    }

    /// Hashes a build-arg value for [`KeyComponents::args`].
    pub fn arg_digest(value: &str) -> String {
        hex::encode(Sha256::digest(value.as_bytes()))
    }

    /// What differs from `other` (empty when the keys are equal).
    pub fn changes_from(&self, other: &KeyComponents) -> Vec<Changed> {
        let mut out = Vec::new();
        if self.format != other.format {
            out.push(Changed::Format);
        }
        if self.parent != other.parent {
            out.push(Changed::Parent);
        }
        if self.instruction != other.instruction {
            out.push(Changed::Instruction);
        }
        let args = changed_names(&self.args, &other.args);
        if !args.is_empty() {
            out.push(Changed::Args(args));
        }
        if self.platform != other.platform {
            out.push(Changed::Platform);
        }
        if self.sources != other.sources {
            out.push(Changed::Sources);
        }
        let stages = changed_names(&self.stages, &other.stages);
        if !stages.is_empty() {
            out.push(Changed::Stages(stages));
        }
        if self.mounts != other.mounts {
            out.push(Changed::Mounts);
        }
        if self.output != other.output {
            out.push(Changed::Output);
        }
        out
    }
}

fn changed_names<V: PartialEq>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> Vec<String> {
    let mut names: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(b.keys().filter(|k| !a.contains_key(*k)).cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The sha256 of everything `content` yields, read through `buf` (reused across files).
pub fn content_sha256(content: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<[u8; 32]> {
    let mut hash = Sha256::new();
    loop {
        let n = content.read(buf)?;
        if n == 0 {
            return Ok(hash.finalize().into());
        }
        hash.update(buf.get(..n).unwrap_or_default());
    }
}

/// Hashes a set of source entries (path, type, mode, size, content or link target) in the
/// order given; callers feed entries sorted by path. mtime, owner and inode are not part of
/// it: a `git clone` gives every file a new mtime, and COPY sets owners itself.
#[derive(Clone, Default)]
pub struct SourcesHasher {
    hasher: Sha256,
}

impl SourcesHasher {
    /// An empty hasher.
    pub fn new() -> Self {
        Self::default()
    }

    fn header(&mut self, kind: &str, path: &str, mode: u32) {
        for part in [kind.as_bytes(), path.as_bytes(), format!("{:o}", mode & 0o7777).as_bytes()] {
            self.hasher.update((part.len() as u64).to_le_bytes());
            self.hasher.update(part);
        }
    }

    /// A directory.
    pub fn dir(&mut self, path: &str, mode: u32) {
        self.header("dir", path, mode);
    }

    /// A symlink and its target.
    pub fn symlink(&mut self, path: &str, mode: u32, target: &str) {
        self.header("symlink", path, mode);
        self.hasher.update((target.len() as u64).to_le_bytes());
        self.hasher.update(target.as_bytes());
    }

    /// A regular file: its size and the sha256 of its content.
    pub fn file(&mut self, path: &str, mode: u32, size: u64, content: &mut dyn std::io::Read) -> std::io::Result<()> {
        let digest = content_sha256(content, &mut vec![0u8; 256 * 1024])?;
        self.file_with_digest(path, mode, size, &digest);
        Ok(())
    }

    /// A regular file whose content digest ([`content_sha256`]) is already known, so callers
    /// can hash file contents on several threads and feed them here in order.
    pub fn file_with_digest(&mut self, path: &str, mode: u32, size: u64, content_sha256: &[u8; 32]) {
        self.header("file", path, mode);
        self.hasher.update(size.to_le_bytes());
        self.hasher.update(content_sha256);
    }

    /// Inline content (a heredoc) or anything else identified by bytes.
    pub fn bytes(&mut self, label: &str, bytes: &[u8]) {
        self.header("bytes", label, 0);
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }

    /// The digest, `sha256:<hex>`.
    pub fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> KeyComponents {
        KeyComponents {
            format: CACHE_FORMAT_VERSION,
            parent: CacheKey::scratch(),
            instruction: r#"{"Copy":{"sources":["a"],"dest":"/a"}}"#.into(),
            args: BTreeMap::from([("A".to_string(), KeyComponents::arg_digest("1"))]),
            platform: "linux/amd64".into(),
            sources: Some("sha256:00".into()),
            stages: BTreeMap::new(),
            mounts: Vec::new(),
            output: "gzip keep".into(),
        }
    }

    type Edit = fn(&mut KeyComponents);

    /// Each row changes one component; the key must change and `changes_from` must name it.
    #[rstest::rstest]
    #[case::format((|c| c.format += 1) as Edit, Changed::Format)]
    #[case::parent((|c| c.parent = CacheKey::from("sha256:11")) as Edit, Changed::Parent)]
    #[case::instruction((|c| c.instruction.push(' ')) as Edit, Changed::Instruction)]
    #[case::arg_value((|c| { c.args.insert("A".into(), KeyComponents::arg_digest("2")); }) as Edit, Changed::Args(vec!["A".into()]))]
    #[case::arg_added((|c| { c.args.insert("B".into(), KeyComponents::arg_digest("")); }) as Edit, Changed::Args(vec!["B".into()]))]
    #[case::arg_removed((|c| { c.args.clear(); }) as Edit, Changed::Args(vec!["A".into()]))]
    #[case::platform((|c| c.platform = "linux/arm64".into()) as Edit, Changed::Platform)]
    #[case::sources((|c| c.sources = Some("sha256:01".into())) as Edit, Changed::Sources)]
    #[case::no_sources((|c| c.sources = None) as Edit, Changed::Sources)]
    #[case::stage((|c| { c.stages.insert("build".into(), CacheKey::from("sha256:22")); }) as Edit, Changed::Stages(vec!["build".into()]))]
    #[case::mounts((|c| c.mounts.push("cache,id=x".into())) as Edit, Changed::Mounts)]
    #[case::output((|c| c.output = "zstd keep".into()) as Edit, Changed::Output)]
    fn each_component_changes_the_key(#[case] edit: Edit, #[case] want: Changed) {
        let a = base();
        let mut b = base();
        edit(&mut b);
        assert_ne!(a.key(), b.key());
        assert_eq!(b.changes_from(&a), vec![want]);
    }

    #[test]
    fn equal_components_give_equal_keys_and_no_change() {
        assert_eq!(base().key(), base().key());
        assert!(base().changes_from(&base()).is_empty());
        let key = base().key();
        assert!(key.as_str().starts_with("sha256:") && key.as_str().len() == 71);
        assert_eq!(key.tag(), key.as_str().replace(':', "-"));
        assert!(key.tag().len() <= 128);
    }

    #[test]
    fn arg_values_are_not_stored_in_clear() {
        let json = serde_json::to_string(&base()).unwrap();
        assert!(json.contains("\"A\""));
        assert!(!json.contains("\"1\""), "{json}");
    }

    type Feed = fn(&mut SourcesHasher);

    /// Which source changes alter the sources digest.
    #[rstest::rstest]
    #[case::content((|h| h.file("a", 0o644, 1, &mut &b"y"[..]).unwrap()) as Feed, true)]
    #[case::mode((|h| h.file("a", 0o755, 1, &mut &b"x"[..]).unwrap()) as Feed, true)]
    #[case::name((|h| h.file("b", 0o644, 1, &mut &b"x"[..]).unwrap()) as Feed, true)]
    #[case::file_to_link((|h| h.symlink("a", 0o777, "x")) as Feed, true)]
    #[case::same((|h| h.file("a", 0o644, 1, &mut &b"x"[..]).unwrap()) as Feed, false)]
    #[case::file_type_bits_ignored((|h| h.file("a", 0o100_644, 1, &mut &b"x"[..]).unwrap()) as Feed, false)]
    fn sources_digest(#[case] feed: Feed, #[case] differs: bool) {
        let mut a = SourcesHasher::new();
        a.file("a", 0o644, 1, &mut &b"x"[..]).unwrap();
        let mut b = SourcesHasher::new();
        feed(&mut b);
        assert_eq!(a.finish() != b.finish(), differs);
    }
}
