//! Cache keys of every step of every needed stage, computed before anything runs.
//!
//! key(0) of a stage is its base image's manifest digest, an earlier stage's final key, or
//! the scratch constant; key(n) hashes key(n-1) with the step's [`KeyComponents`]. A
//! `COPY --from=stage` is keyed by that stage's final key, so stages are keyed in
//! dependency order (the plan rejects cycles). Context sources are hashed here, after
//! `.dockerignore`, in [`context_sources_digest`] — the one place that mirrors COPY's source
//! selection.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::base::BaseSet;
use super::context::BuildContext;
use super::{ExecuteError, Executor};
use crate::dockerfile::instruction::{Instruction, MountKind};
use crate::layer::LayerOptions;
use crate::plan::{Base, Plan, Stage, Step};
use rbuild_cache::key::{content_sha256, CacheKey, KeyComponents, SourcesHasher, CACHE_FORMAT_VERSION};

/// The keys of one stage.
#[derive(Debug, Clone)]
pub struct StageKeys {
    /// key(0).
    pub base: CacheKey,
    /// Components of each step (the key is [`KeyComponents::key`]).
    pub steps: Vec<KeyComponents>,
    /// key(1..=n), cached.
    pub keys: Vec<CacheKey>,
}

impl StageKeys {
    /// The key of the stage's last step (key(0) for a stage without steps).
    pub fn final_key(&self) -> CacheKey {
        self.keys.last().cloned().unwrap_or_else(|| self.base.clone())
    }
}

/// Keys of every needed stage (`None` for stages that do not run).
pub fn plan_keys(exec: &Executor<'_>, plan: &Plan, bases: &BaseSet) -> Result<Vec<Option<StageKeys>>, ExecuteError> {
    let mut out: Vec<Option<StageKeys>> = vec![None; plan.stages.len()];
    let mut pending: Vec<&Stage> = plan.stages.iter().filter(|s| s.needed).collect();
    while !pending.is_empty() {
        let (ready, waiting): (Vec<&Stage>, Vec<&Stage>) =
            pending.into_iter().partition(|s| s.depends_on.iter().all(|d| out.get(*d).is_some_and(Option::is_some)));
        if ready.is_empty() {
            return Err(ExecuteError::TargetMissing { index: waiting.first().map_or(plan.target, |s| s.index) });
        }
        for stage in ready {
            let keys = stage_keys(exec, plan, stage, bases, &out)?;
            if let Some(slot) = out.get_mut(stage.index) {
                *slot = Some(keys);
            }
        }
        pending = waiting;
    }
    Ok(out)
}

fn stage_keys(
    exec: &Executor<'_>,
    plan: &Plan,
    stage: &Stage,
    bases: &BaseSet,
    done: &[Option<StageKeys>],
) -> Result<StageKeys, ExecuteError> {
    let base = match &stage.base {
        Base::Scratch => CacheKey::scratch(),
        Base::Image { reference } => {
            let image = bases
                .get(reference, &stage.platform)
                .map_err(|source| ExecuteError::Base { stage: stage.display_name(), source: Box::new(source) })?;
            match &image.digest {
                Some(d) => CacheKey::base_image(d),
                None => return Err(ExecuteError::TargetMissing { index: stage.index }),
            }
        }
        Base::Stage { index } => final_key(done, *index).ok_or(ExecuteError::TargetMissing { index: *index })?,
    };
    let mut parent = base.clone();
    let mut steps = Vec::with_capacity(stage.steps.len());
    let mut keys = Vec::with_capacity(stage.steps.len());
    let inputs = KeyInputs {
        context: exec.context,
        plan,
        stage,
        done,
        bases,
        output: output_component(&exec.layer),
        build_time: &exec.created,
    };
    for step in &stage.steps {
        let components = inputs.components(step, parent);
        parent = components.key();
        keys.push(parent.clone());
        steps.push(components);
    }
    Ok(StageKeys { base, steps, keys })
}

fn final_key(done: &[Option<StageKeys>], index: usize) -> Option<CacheKey> {
    done.get(index).and_then(Option::as_ref).map(StageKeys::final_key)
}

/// The layer options that change layer bytes (not the manifest format: media types are
/// rebuilt from the codec).
pub fn output_component(layer: &LayerOptions) -> String {
    format!(
        "{:?} {:?} zstd-mt={} gzip-blocks store={}",
        layer.compression,
        layer.mtime,
        layer.zstd_workers > 0,
        layer.gzip.store_incompressible
    )
}

struct KeyInputs<'a> {
    context: &'a BuildContext,
    plan: &'a Plan,
    stage: &'a Stage,
    done: &'a [Option<StageKeys>],
    /// Images `COPY --from=<image>` reads, resolved to their manifest digests.
    bases: &'a BaseSet,
    output: String,
    build_time: &'a str,
}

impl KeyInputs<'_> {
    fn components(&self, step: &Step, parent: CacheKey) -> KeyComponents {
        // Invariant: instructions hold only strings, numbers, booleans and vectors of them.
        let instruction = serde_json::to_string(&step.instruction).expect("instruction serialises");
        let mut c = KeyComponents {
            format: CACHE_FORMAT_VERSION,
            parent,
            instruction,
            args: step.args.iter().map(|(k, v)| (k.clone(), KeyComponents::arg_digest(v))).collect(),
            platform: self.stage.platform.to_string(),
            sources: None,
            stages: BTreeMap::new(),
            mounts: Vec::new(),
            output: self.output.clone(),
        };
        match &step.instruction {
            Instruction::Copy(copy) | Instruction::Add(copy) => match &copy.from {
                Some(from) => {
                    c.stages.insert(from.clone(), self.stage_key(from));
                }
                None => {
                    let local: Vec<&str> =
                        copy.sources.iter().map(String::as_str).filter(|s| !s.starts_with("<<")).collect();
                    c.sources = Some(context_sources_digest(self.context, &local));
                }
            },
            Instruction::Run(run) => {
                let mut bind_sources = Vec::new();
                for m in &run.mounts {
                    // Invariant: a mount holds only strings, numbers and booleans.
                    c.mounts.push(serde_json::to_string(m).expect("mount serialises"));
                    match (&m.from, m.kind) {
                        (Some(from), _) => {
                            c.stages.insert(from.clone(), self.stage_key(from));
                        }
                        (None, MountKind::Bind) => bind_sources.push(m.source.clone().unwrap_or_default()),
                        _ => {}
                    }
                }
                if !bind_sources.is_empty() {
                    let refs: Vec<&str> = bind_sources.iter().map(String::as_str).collect();
                    c.sources = Some(context_sources_digest(self.context, &refs));
                }
            }
            _ => {}
        }
        c
    }

    /// The final key of the stage `from` names, else the resolved manifest digest of the
    /// image it names; an image not resolved gets a per-build value (never a stale hit).
    fn stage_key(&self, from: &str) -> CacheKey {
        if let Some(k) = self.plan.stage_named(from).and_then(|s| final_key(self.done, s.index)) {
            return k;
        }
        match self.bases.image(from).and_then(|image| image.digest.as_ref()) {
            Some(digest) => CacheKey::base_image(digest),
            None => CacheKey::from(format!("unpinned image {from} at {}", self.build_time).as_str()),
        }
    }
}

/// Digest of the context files the sources select (content, mode, size, link targets;
/// `.dockerignore` applied exactly as COPY applies it). A selection error is hashed as its
/// message: the step then misses and fails with the real error when it runs.
pub fn context_sources_digest(context: &BuildContext, sources: &[&str]) -> String {
    let mut entries = Vec::new();
    for src in sources {
        entries.push(SourceEntry::Bytes { label: "source", bytes: src.to_string() });
        match context.select(src) {
            Ok(selected) => {
                for rel in selected {
                    entries.push(SourceEntry::TreeStart);
                    if let Err(e) = collect_entry_tree(context, &rel, &mut entries) {
                        entries.push(SourceEntry::Bytes { label: "error", bytes: format!("{rel}: {e}") });
                    }
                }
            }
            Err(e) => entries.push(SourceEntry::Bytes { label: "error", bytes: e.to_string() }),
        }
    }
    let digests = file_digests(&entries);
    let mut hasher = SourcesHasher::new();
    let mut failed_tree = false;
    for (entry, digest) in entries.iter().zip(digests) {
        match entry {
            // A tree whose walk or read failed hashes its error and nothing after it.
            SourceEntry::TreeStart => failed_tree = false,
            SourceEntry::Bytes { label, bytes } => hasher.bytes(label, bytes.as_bytes()),
            _ if failed_tree => {}
            SourceEntry::Dir { rel, mode } => hasher.dir(rel, *mode),
            SourceEntry::Symlink { rel, mode, target } => hasher.symlink(rel, *mode, target),
            SourceEntry::Special { rel } => hasher.bytes("special", rel.as_bytes()),
            SourceEntry::File { rel, mode, size, .. } => match digest {
                Some(Ok(d)) => hasher.file_with_digest(rel, *mode, *size, &d),
                Some(Err(e)) => {
                    hasher.bytes("error", format!("{rel}: {e}").as_bytes());
                    failed_tree = true;
                }
                None => hasher.bytes("error", rel.as_bytes()),
            },
        }
    }
    hasher.finish()
}

/// One thing a COPY/ADD source contributes to its digest, in hashing order.
enum SourceEntry {
    /// Where one selected path's tree begins.
    TreeStart,
    Bytes {
        label: &'static str,
        bytes: String,
    },
    Dir {
        rel: String,
        mode: u32,
    },
    Symlink {
        rel: String,
        mode: u32,
        target: String,
    },
    File {
        rel: String,
        mode: u32,
        size: u64,
        host: PathBuf,
    },
    Special {
        rel: String,
    },
}

/// Lists `rel` and, for a directory, everything below it that `.dockerignore` keeps.
fn collect_entry_tree(context: &BuildContext, rel: &str, out: &mut Vec<SourceEntry>) -> std::io::Result<()> {
    let host = context.dir().join(rel);
    let meta = fs::symlink_metadata(&host)?;
    out.push(source_entry(host.clone(), rel.to_string(), &meta)?);
    if !meta.is_dir() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(&host).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(std::io::Error::other)?;
        let Ok(below) = entry.path().strip_prefix(&host) else { continue };
        let below = below.to_string_lossy();
        let in_context = if rel.is_empty() { below.to_string() } else { format!("{rel}/{below}") };
        if context.is_excluded(&in_context) {
            continue;
        }
        let meta = entry.path().symlink_metadata()?;
        out.push(source_entry(entry.into_path(), in_context, &meta)?);
    }
    Ok(())
}

fn source_entry(host: PathBuf, rel: String, meta: &fs::Metadata) -> std::io::Result<SourceEntry> {
    let ft = meta.file_type();
    Ok(if ft.is_dir() {
        SourceEntry::Dir { rel, mode: meta.mode() }
    } else if ft.is_symlink() {
        SourceEntry::Symlink { target: fs::read_link(&host)?.to_string_lossy().into_owned(), rel, mode: meta.mode() }
    } else if ft.is_file() {
        SourceEntry::File { rel, mode: meta.mode(), size: meta.size(), host }
    } else {
        SourceEntry::Special { rel }
    })
}

/// The content digests of the files among `entries` (`None` for the others), read on up to
/// as many threads as there are cores: hashing a large context is the one CPU-bound part of
/// a fully cached build.
fn file_digests(entries: &[SourceEntry]) -> Vec<Option<std::io::Result<[u8; 32]>>> {
    let files: Vec<(usize, &Path)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            SourceEntry::File { host, .. } => Some((i, host.as_path())),
            _ => None,
        })
        .collect();
    let workers = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 4).min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let hash_some = || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut done = Vec::new();
        while let Some(&(index, path)) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
            done.push((index, fs::File::open(path).and_then(|mut f| content_sha256(&mut f, &mut buf))));
        }
        done
    };
    let mut out: Vec<Option<std::io::Result<[u8; 32]>>> = entries.iter().map(|_| None).collect();
    // This thread hashes too; with one worker nothing is spawned.
    let results: Vec<(usize, std::io::Result<[u8; 32]>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..workers).map(|_| s.spawn(hash_some)).collect();
        let mut all = hash_some();
        for h in handles {
            // A hashing thread cannot panic on input (reads and hashes only); were it to,
            // its files keep `None` and hash as missing content.
            all.extend(h.join().unwrap_or_default());
        }
        all
    });
    for (index, result) in results {
        if let Some(slot) = out.get_mut(index) {
            *slot = Some(result);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::progress::Silent;
    use crate::executor::Identity;
    use crate::plan::{PlanRequest, UnresolvedBases};
    use crate::sandbox::{CancelToken, Sandbox};
    use rbuild_cache::store::BlobStore;

    const STEPS: &str =
        "FROM scratch\nARG EARLY=1\nCOPY a.txt /a\nARG LATE=x\nCOPY b.txt /b\nRUN echo $LATE\nENV E=$EARLY\n";

    /// The keys of `STEPS`' stage for a context with `a.txt`/`b.txt` and these build args.
    fn keys(dir: &Path, args: &[(&str, &str)]) -> Vec<CacheKey> {
        let mut request = PlanRequest::host();
        request.build_args = args.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        let plan = crate::frontend::plan_source(&dir.join("Dockerfile"), STEPS, &request, &UnresolvedBases).unwrap();
        let context = BuildContext::open(dir, &dir.join("Dockerfile")).unwrap();
        let store = BlobStore::open(dir.join(".store")).unwrap();
        let exec = Executor {
            context: &context,
            store: &store,
            work_dir: dir.to_path_buf(),
            layer: LayerOptions::default(),
            sandbox: Sandbox::new().into(),
            identity: Identity::current(),
            created: "2026-01-01T00:00:00Z".into(),
            progress: &Silent,
            cancel: CancelToken::default(),
            remote: None,
            cache_mounts: dir.join(".mounts"),
            secrets: Default::default(),
            roots: Default::default(),
        };
        let keys = plan_keys(&exec, &plan, &BaseSet::default()).unwrap();
        keys.into_iter().flatten().next().unwrap().keys
    }

    type Edit = fn(&Path);

    /// Which change alters which key: the index of the first step whose key changes (steps:
    /// ARG EARLY, COPY a, ARG LATE, COPY b, RUN, ENV), `None` when every key stays.
    #[rstest::rstest]
    #[case::late_arg((|_: &Path| {}) as Edit, &[("LATE", "y")], Some(2))]
    #[case::early_arg((|_: &Path| {}) as Edit, &[("EARLY", "2")], Some(0))]
    #[case::undeclared_arg((|_: &Path| {}) as Edit, &[("OTHER", "1")], None)]
    #[case::first_source((|d: &Path| fs::write(d.join("a.txt"), "A2").unwrap()) as Edit, &[], Some(1))]
    #[case::second_source((|d: &Path| fs::write(d.join("b.txt"), "B2").unwrap()) as Edit, &[], Some(3))]
    #[case::unrelated_file((|d: &Path| fs::write(d.join("c.txt"), "C").unwrap()) as Edit, &[], None)]
    fn first_changed_key(#[case] edit: Edit, #[case] args: &[(&str, &str)], #[case] first: Option<usize>) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.txt"), "A").unwrap();
        fs::write(dir.path().join("b.txt"), "B").unwrap();
        let before = keys(dir.path(), &[]);
        assert_eq!(before.len(), 6);
        edit(dir.path());
        let after = keys(dir.path(), args);
        let changed = before.iter().zip(&after).position(|(a, b)| a != b);
        assert_eq!(changed, first);
        if let Some(i) = changed {
            assert!(before.iter().zip(&after).skip(i).all(|(a, b)| a != b), "every key after a change changes too");
        }
    }

    type Change = fn(&Path);

    /// Which context changes alter the sources digest of `COPY . /`.
    #[rstest::rstest]
    #[case::content((|d: &Path| fs::write(d.join("a.txt"), "changed").unwrap()) as Change, true)]
    #[case::new_file((|d: &Path| fs::write(d.join("b.txt"), "b").unwrap()) as Change, true)]
    #[case::mode((|d: &Path| fs::set_permissions(d.join("a.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap()) as Change, true)]
    #[case::symlink_target((|d: &Path| { fs::remove_file(d.join("link")).unwrap(); std::os::unix::fs::symlink("other", d.join("link")).unwrap(); }) as Change, true)]
    #[case::ignored_file((|d: &Path| fs::write(d.join("ignored.log"), "new noise").unwrap()) as Change, false)]
    #[case::mtime_only((|d: &Path| { let f = fs::File::options().write(true).open(d.join("a.txt")).unwrap(); f.set_modified(std::time::UNIX_EPOCH).unwrap(); }) as Change, false)]
    fn context_changes(#[case] change: Change, #[case] differs: bool) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("a.txt"), "a").unwrap();
        fs::write(d.join("ignored.log"), "noise").unwrap();
        fs::write(d.join(".dockerignore"), "*.log\n").unwrap();
        std::os::unix::fs::symlink("a.txt", d.join("link")).unwrap();
        let digest = || {
            let context = BuildContext::open(d, &d.join("Dockerfile")).unwrap();
            context_sources_digest(&context, &["."])
        };
        let before = digest();
        change(d);
        assert_eq!(before != digest(), differs);
    }

    /// Files hashed on several threads feed the digest in path order: the result is the
    /// sequential hash of the same entries (so keys do not depend on the core count).
    #[test]
    fn parallel_file_hashing_keeps_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("src")).unwrap();
        let names: Vec<String> = (0..40).map(|i| format!("f{i:02}")).collect();
        for (i, name) in names.iter().enumerate() {
            fs::write(d.join("src").join(name), vec![b'a' + (i % 26) as u8; 1000 * i]).unwrap();
        }
        let context = BuildContext::open(d, &d.join("Dockerfile")).unwrap();
        let mut want = SourcesHasher::new();
        want.bytes("source", b"src");
        want.dir("src", fs::metadata(d.join("src")).unwrap().mode());
        for name in &names {
            let path = d.join("src").join(name);
            let meta = fs::metadata(&path).unwrap();
            want.file(&format!("src/{name}"), meta.mode(), meta.size(), &mut fs::File::open(&path).unwrap()).unwrap();
        }
        assert_eq!(context_sources_digest(&context, &["src"]), want.finish());
    }
}
