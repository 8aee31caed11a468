//! End-to-end tests against a real registry process (Debian's `docker-registry`), checked with
//! an independent client (skopeo) where it matters. One test binary; modules:
//!
//! - `support`: `TestContext` (registry + client + blob store + base images, the rbuild binary)
//! - `pull`: by tag, by digest, platform selection from an index, Docker Hub mirror
//! - `push`: round trip read back by skopeo, chunked uploads, Docker media types, skipped and
//!   cross-repository-mounted blobs
//! - `auth`: every registry variant, wrong password, identity token, TLS trust
//! - `failures`: registry down, unknown manifest and repository
//! - `faults`: a fault-injecting proxy in front of the registry: statuses, 429 + Retry-After,
//!   cut answers and uploads, flipped bytes, stalls, on manifests, configs, layers, uploads
//! - `liveness`: a registry that never answers, SIGTERM during a stall, the build child dying
//!   with its parent (issue 16)
//! - `diagnostics` (issue 18): TLS/HTTP and CA hints, credential errors before any step, a
//!   failed RUN's output in every progress mode, exit codes 130/143, `--cache-only` into a new
//!   cache repository, `--commit-suffix auto` on a dirty tree
//! - `hostile_corpus` (issue 16): 33 hostile archives through FROM and ADD, rootless and root,
//!   a canary directory outside the build root unchanged, no panic
//! - `build`: `rbuild build` as an unprivileged user: files, owners, config, running the image,
//!   commit-suffixed and latest tags, failures
//! - `differential`: the `testdata/build/diff-*` cases built by rbuild (rootless and root) and
//!   by Docker's BuildKit builder (buildah as a second opinion), rootfs and config compared
//! - `wide_range`: a 600000-id subordinate range, layers owned by uid 491327
//! - `outputs`: `--output-dir`, Kaniko's digest files, `--progress json`, `--no-push` +
//!   `--tar-path`, `--push-retry`, `--target`, `--platform`, checked against the registry
//! - `cache`: the registry layer cache: hits and misses per changed input, no layer download
//!   on a full hit (registry access log), same digest, TTL, corrupt entries, 8 concurrent
//!   builds, `--cache-mode min`, `cache prune`, `warm`
//! - `copy_add`: COPY/ADD as `rbuild-test`: archives of every compression, hostile archives,
//!   URLs with `--checksum`, `--parents`, `--exclude`, symlinks, heredocs, `--from=<image>`, ONBUILD
//! - `run_steps`: RUN owners with the build user namespace (USER, chown, adduser), the
//!   single-id fallback, `RUN --mount` (cache, secret, bind, tmpfs, ssh error), heredocs
//! - `container`: `--isolation container` (and `auto` picking it) in a throwaway chroot root without
//!   CAP_SYS_ADMIN: the image, the excluded paths, refusal outside rbuild's own image
//! - `pipeline`: deploy/ (Argo, Tekton) parse with the required structure; the build-push
//!   script from the Argo template pushes both tags to the registry
//! - `manifests`, `manifest_rules`: every manifest under deploy/ against the Argo (v4.1.2,
//!   v3.7.9) and Tekton v1 schemas with unknown fields rejected, and Argo's/Tekton's submission
//!   rules (CronWorkflow schedules and parameter values, references, declared variables)
//! - `deploy_profiles`: the templates per pod profile differ from `rbuild-ci` only in the build
//!   pod's settings, meet their Pod Security level, write outputs to volumes; README table
//! - `pipeline_pods`: the Argo template's clone → test → build-push steps in emulated pods
//!   with each step's securityContext and volumes from the YAML
//! - `pods`: rbuild in emulated Kubernetes pods (runc, securityContext profiles (a)–(f) of
//!   issue 14) pushing to the registry; docs/rootless.md's profile table checked against them
//! - `multiplatform`: `--platform linux/amd64,linux/arm64` (arm64 RUN emulated) pushing one
//!   index under both tags, a fresh-pod rebuild from the cache, the Argo fan-out + merge
//!   scripts giving the same index, the no-emulator error
//! - `root_devices`: a root build's RUN cannot use device nodes a base layer carries (issue 16)
//! - `uploads`: a cache-filling build uploads each new layer once (counting proxy, access
//!   log), mounting it into its other tags' repositories and the cache repository
//! - `cli`: `rbuild pull` / `rbuild inspect` through the real binary, `config.json`, helpers

mod auth;
mod build;
mod cache;
mod cli;
mod container;
mod copy_add;
mod deploy_profiles;
mod diagnostics;
mod differential;
mod failures;
mod faults;
mod hostile_corpus;
mod liveness;
mod manifest_rules;
mod manifests;
mod multiplatform;
mod outputs;
mod pipeline;
mod pipeline_pods;
mod pods;
mod pull;
mod push;
mod root_devices;
mod run_steps;
mod support;
mod uploads;
mod wide_range;
