//! End-to-end tests against a real registry process (Debian's `docker-registry`), checked with
//! an independent client (skopeo) where it matters. One test binary; modules:
//!
//! - `support`: `TestContext` (registry + client + blob store + base images, the rbuild binary)
//! - `pull`: by tag, by digest, platform selection from an index, Docker Hub mirror
//! - `push`: round trip read back by skopeo, chunked uploads, Docker media types, skipped and
//!   cross-repository-mounted blobs
//! - `auth`: every registry variant, wrong password, identity token, TLS trust
//! - `failures`: registry down, unknown manifest and repository
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
//! - `cli`: `rbuild pull` / `rbuild inspect` through the real binary, `config.json`, helpers

mod auth;
mod build;
mod cache;
mod cli;
mod container;
mod copy_add;
mod differential;
mod failures;
mod outputs;
mod pipeline;
mod pull;
mod push;
mod run_steps;
mod support;
mod wide_range;
