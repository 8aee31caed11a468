//! Image assembly read back by independent tools: skopeo (OCI layout and
//! docker-archive) and umoci (unpack as root and rootless), compared with the source tree.

mod layer_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use layer_support::{assert_same_tree, rich_tree, Compare};
use rbuild_builder::image::archive::write_docker_archive_file;
use rbuild_builder::image::{
    assemble, write_oci_layout, AssembledImage, Healthcheck, History, ImageConfig, ImageLayer,
};
use rbuild_builder::layer::snapshot::native::all_entries;
use rbuild_builder::layer::{write_layer, Compression, LayerOptions, ManifestFormat, MtimePolicy};

fn tool(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn config() -> ImageConfig {
    let mut c = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        created: Some(rbuild_builder::image::rfc3339_utc(0)),
        ..Default::default()
    };
    c.config.env = vec!["PATH=/usr/bin:/bin".into(), "A=1".into()];
    c.config.cmd = Some(vec!["/bin/tool".into()]);
    c.config.working_dir = Some("/home/user".into());
    c.config.user = Some("1000:1000".into());
    c.config.labels = [("z".to_string(), "last".to_string()), ("a".to_string(), "first".to_string())].into();
    c.config.exposed_ports = [("8080/tcp".to_string(), Default::default())].into();
    c.config.healthcheck = Some(Healthcheck {
        test: vec!["CMD".into(), "true".into()],
        interval: Some(30_000_000_000),
        ..Default::default()
    });
    c.config.on_build = vec!["RUN echo child".into()];
    c.config.shell = Some(vec!["/bin/sh".into(), "-c".into()]);
    c.config.stop_signal = Some("SIGTERM".into());
    c.history = vec![
        History { created_by: Some("COPY . /".into()), ..Default::default() },
        History { created_by: Some("ENV A=1".into()), empty_layer: true, ..Default::default() },
    ];
    c
}

fn build(dir: &Path, src: &Path, format: ManifestFormat, compression: Compression) -> AssembledImage {
    let opts = LayerOptions { compression, format, mtime: MtimePolicy::Keep, ..Default::default() };
    let blob = dir.join("layer.blob");
    let file = std::fs::File::create(&blob).unwrap();
    let (desc, _) = write_layer(file, src, &all_entries(src).unwrap(), &opts).unwrap();
    assemble(&config(), vec![ImageLayer { descriptor: desc, blob }], format).unwrap()
}

fn source(t: &Path) -> PathBuf {
    let src = t.join("src");
    std::fs::create_dir(&src).unwrap();
    rich_tree(&src);
    src
}

#[test]
fn config_and_manifest_are_canonical() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let a = build(t.path(), &src, ManifestFormat::Docker, Compression::Gzip { level: 6 });
    let b = build(t.path(), &src, ManifestFormat::Docker, Compression::Gzip { level: 6 });
    assert_eq!(a.manifest.digest(), b.manifest.digest());
    let cfg = String::from_utf8(a.config_json.clone()).unwrap();
    for key in ["\"Healthcheck\"", "\"OnBuild\"", "\"Shell\"", "\"StopSignal\"", "\"diff_ids\"", "\"empty_layer\":true"]
    {
        assert!(cfg.contains(key), "{key} missing in {cfg}");
    }
    assert!(cfg.find("\"a\":\"first\"") < cfg.find("\"z\":\"last\""), "labels sorted");
    let m = String::from_utf8(a.manifest_json.clone()).unwrap();
    assert!(m.contains("application/vnd.docker.distribution.manifest.v2+json"));
    assert!(m.contains("application/vnd.docker.image.rootfs.diff.tar.gzip"));
}

#[test]
fn zstd_layers_force_oci_media_types() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let img = build(t.path(), &src, ManifestFormat::Docker, Compression::Zstd { level: 3 });
    assert_eq!(img.format, ManifestFormat::Oci);
    assert!(String::from_utf8_lossy(&img.manifest_json).contains("application/vnd.oci.image.layer.v1.tar+zstd"));
}

#[rstest::rstest]
#[case(ManifestFormat::Docker, Compression::Gzip { level: 6 })]
#[case(ManifestFormat::Oci, Compression::Gzip { level: 6 })]
#[case(ManifestFormat::Oci, Compression::Zstd { level: 3 })]
fn skopeo_inspects_the_oci_layout(#[case] format: ManifestFormat, #[case] compression: Compression) {
    if !tool("skopeo") {
        eprintln!("skipping: skopeo not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let img = build(t.path(), &src, format, compression);
    let layout = t.path().join("layout");
    write_oci_layout(&layout, &img, Some("v1")).unwrap();
    let out = run(Command::new("skopeo").arg("inspect").arg(format!("oci:{}:v1", layout.display())));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], img.to_format(ManifestFormat::Oci).manifest.digest().to_string());
    assert_eq!(v["Layers"][0], img.layers[0].descriptor.digest.to_string());
    assert_eq!(v["Labels"]["a"], "first");
    assert_eq!(v["Env"][1], "A=1");
}

fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path, rootless: bool) {
    let mut cmd = Command::new("umoci");
    cmd.args(["unpack", "--image"]).arg(format!("{}:{tag}", layout.display()));
    if rootless {
        cmd.arg("--rootless");
    }
    run(cmd.arg(bundle));
}

#[rstest::rstest]
#[case::root(false)]
#[case::rootless(true)]
fn umoci_unpacks_the_same_tree(#[case] rootless: bool) {
    if !tool("umoci") {
        eprintln!("skipping: umoci not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let img = build(t.path(), &src, ManifestFormat::Oci, Compression::Gzip { level: 6 });
    let layout = t.path().join("layout");
    write_oci_layout(&layout, &img, Some("v1")).unwrap();
    let bundle = t.path().join("bundle");
    umoci_unpack(&layout, "v1", &bundle, rootless);
    let how = if rootless { Compare::Rootless } else { Compare::Full };
    assert_same_tree(&src, &bundle.join("rootfs"), how);
}

#[test]
fn docker_archive_copies_through_skopeo() {
    if !tool("skopeo") || !tool("umoci") {
        eprintln!("skipping: skopeo/umoci not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let img = build(t.path(), &src, ManifestFormat::Docker, Compression::Gzip { level: 6 });
    let archive = t.path().join("image.tar");
    write_docker_archive_file(&archive, &img, &["registry.example.com/team/app:v1".into()]).unwrap();
    let out = run(Command::new("skopeo").arg("inspect").arg(format!("docker-archive:{}", archive.display())));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // containers/image reports docker-archive layers by their uncompressed digest.
    assert_eq!(v["Layers"][0], img.layers[0].descriptor.diff_id.to_string());
    let copy = t.path().join("copy");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("oci:{}:v1", copy.display())));
    let bundle = t.path().join("bundle");
    umoci_unpack(&copy, "v1", &bundle, false);
    assert_same_tree(&src, &bundle.join("rootfs"), Compare::Full);
}

#[test]
fn docker_archive_manifest_names_tags_config_and_layers() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let img = build(t.path(), &src, ManifestFormat::Docker, Compression::Gzip { level: 6 });
    let tags = vec!["registry.example.com/team/app:v1".to_string(), "registry.example.com/team/app:latest".to_string()];
    let archive = t.path().join("image.tar");
    write_docker_archive_file(&archive, &img, &tags).unwrap();
    let mut ar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    let mut names = Vec::new();
    let mut manifest = None;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if name == "manifest.json" {
            manifest = Some(serde_json::from_reader::<_, serde_json::Value>(&mut e).unwrap());
        }
        names.push(name);
    }
    let m = manifest.unwrap();
    assert_eq!(m[0]["RepoTags"], serde_json::json!(tags));
    assert_eq!(m[0]["Config"], format!("blobs/sha256/{}", img.config.digest().digest()));
    assert_eq!(m[0]["Layers"][0], format!("blobs/sha256/{}", img.layers[0].descriptor.digest.hex()));
    assert!(names.contains(&format!("blobs/sha256/{}", img.layers[0].descriptor.digest.hex())));
}
