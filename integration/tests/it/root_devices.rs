//! Root builds (issue 16): a device node a base layer carries is still a device node in the
//! stage root (recorded faithfully) but never usable as a device inside RUN: the root is
//! mounted `nodev`, and only the standard `/dev` holds working devices.

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use rbuild_cache::oci::sha256_digest;
use rbuild_integration::images::{busybox_layer, push, write_image, Flavor, Layer};
use rbuild_integration::Variant;

use crate::build::rustix_is_root;
use crate::support::{rbuild_bin, TestContext};

/// A gzip layer holding `devs/null`, a character device 1:3 (what `/dev/null` is).
fn device_layer(store: &rbuild_cache::store::BlobStore) -> Layer {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_path("devs/").unwrap();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_uid(0);
    dir.set_gid(0);
    dir.set_mtime(0);
    dir.set_size(0);
    dir.set_cksum();
    tar.append(&dir, std::io::empty()).unwrap();
    let mut dev = tar::Header::new_ustar();
    dev.set_path("devs/null").unwrap();
    dev.set_entry_type(tar::EntryType::Char);
    dev.set_mode(0o666);
    dev.set_uid(0);
    dev.set_gid(0);
    dev.set_mtime(0);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    dev.set_size(0);
    dev.set_cksum();
    tar.append(&dev, std::io::empty()).unwrap();
    let raw = tar.into_inner().unwrap();
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let blob = store.put_bytes(&gz.finish().unwrap()).unwrap();
    Layer { blob, diff_id: sha256_digest(&raw) }
}

#[tokio::test]
async fn issue_16_device_nodes_from_a_base_are_not_devices_in_a_root_run() {
    if !rustix_is_root() {
        eprintln!("skipping: a root build needs root");
        return;
    }
    let Some(ctx) = TestContext::start(Variant::Http).await else {
        return;
    };
    let busybox = busybox_layer(&ctx.store, Path::new("/bin/busybox")).unwrap();
    let devices = device_layer(&ctx.store);
    let arch = rbuild_cache::platform::TargetPlatform::host().architecture;
    let manifest = write_image(&ctx.store, Flavor::Oci, &arch, None, &[busybox, devices]).unwrap();
    let base = format!("{}/devbase", ctx.registry.addr());
    push(&ctx.client, &ctx.store, &base, &["1"], &manifest).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx");
    std::fs::create_dir(&context).unwrap();
    // The node is there and still a character device; writing through it fails; the
    // standard /dev/null works.
    let dockerfile = format!(
        "FROM {base}:1\nRUN test -c /devs/null\nRUN echo x > /dev/null\nRUN if echo x > /devs/null; then echo 'a device from the layer is usable' >&2; exit 1; fi\n"
    );
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    let out = std::process::Command::new(rbuild_bin())
        .arg("build")
        .arg("-c")
        .arg(&context)
        .args(["--insecure-registry", ctx.registry.addr(), "--no-push", "--cache-dir"])
        .arg(dir.path().join("cache"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
