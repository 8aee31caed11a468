//! The files a workflow reads after `rbuild build`: Kaniko's (`--digest-file`,
//! `--image-name-with-digest-file`, `--image-name-tag-with-digest-file`, `--tar-path`,
//! `--oci-layout-path`) and `--output-dir` (`build.json` + `digest`).

use std::path::Path;

use anyhow::Context as _;
use rbuild_builder::image::archive::write_docker_archive_file;
use rbuild_builder::image::{write_oci_layout, AssembledImage};

use crate::progress::BuildSummary;
use crate::settings::BuildSettings;

/// File name of the JSON summary in `--output-dir`.
pub const BUILD_JSON: &str = "build.json";
/// File name of the bare digest in `--output-dir` (for `outputs.parameters.valueFrom.path`).
pub const DIGEST: &str = "digest";

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Writes every output file the flags ask for.
pub fn write_outputs(s: &BuildSettings, image: &AssembledImage, summary: &BuildSummary) -> anyhow::Result<()> {
    let digest = &summary.digest;
    if let Some(p) = &s.digest_file {
        write(p, digest)?;
    }
    let repos: Vec<String> =
        s.destinations.iter().map(|(r, _)| format!("{}/{}", r.registry(), r.repository())).collect();
    if let Some(p) = &s.image_name_with_digest_file {
        write(p, &repos.iter().map(|r| format!("{r}@{digest}\n")).collect::<String>())?;
    }
    if let Some(p) = &s.image_name_tag_with_digest_file {
        write(p, &summary.references.iter().map(|r| format!("{r}\n")).collect::<String>())?;
    }
    if let Some(p) = &s.tar_path {
        write_docker_archive_file(p, image, &s.tag_names())?;
    }
    if let Some(p) = &s.oci_layout_path {
        write_oci_layout(p, image, s.tag_names().first().map(String::as_str))?;
    }
    if let Some(dir) = &s.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = serde_json::to_string_pretty(summary).context("serialising the build summary")?;
        write(&dir.join(BUILD_JSON), &format!("{json}\n"))?;
        write(&dir.join(DIGEST), digest)?;
    }
    Ok(())
}
