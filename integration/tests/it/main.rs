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
//! - `container`: `--isolation container` (and `auto` picking it) in a throwaway chroot root without
//!   CAP_SYS_ADMIN: the image, the excluded paths, refusal outside rbuild's own image
//! - `pipeline`: deploy/ (Argo, Tekton) parse with the required structure; the build-push
//!   script from the Argo template pushes both tags to the registry
//! - `cli`: `rbuild pull` / `rbuild inspect` through the real binary, `config.json`, helpers

mod auth;
mod build;
mod cli;
mod container;
mod failures;
mod pipeline;
mod pull;
mod push;
mod support;
