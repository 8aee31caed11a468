//! Store blobs are verified before they leave rbuild (issue 16): a layer whose blob was
//! damaged on disk, or whose diff_id is not what its tar hashes to, is refused while it is
//! unpacked; `--oci-layout-path` and `--tar-path` outputs refuse a damaged blob, leave no
//! partial file, and are copies (never hard links into the store).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rbuild_builder::executor::error_chain;
use rbuild_builder::image::archive::write_docker_archive_file;
use rbuild_builder::image::{assemble, write_oci_layout, AssembledImage, ImageConfig, ImageLayer};
use rbuild_builder::layer::exclusions::Exclusions;
use rbuild_builder::layer::ownership::IdMaps;
use rbuild_builder::layer::root_path::RootDir;
use rbuild_builder::layer::snapshot::native::all_entries;
use rbuild_builder::layer::unpack::{OwnershipMode, UnpackOptions};
use rbuild_builder::layer::verify::unpack_verified;
use rbuild_builder::layer::{write_layer, Compression, LayerOptions, ManifestFormat};

fn image(dir: &Path) -> AssembledImage {
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("file"), vec![b'x'; 100_000]).unwrap();
    let opts =
        LayerOptions { compression: Compression::Gzip { level: 6 }, format: ManifestFormat::Oci, ..Default::default() };
    let blob = dir.join("layer.blob");
    let (descriptor, _) =
        write_layer(std::fs::File::create(&blob).unwrap(), &src, &all_entries(&src).unwrap(), &opts).unwrap();
    let config = ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..Default::default() };
    assemble(&config, vec![ImageLayer { descriptor, blob }], ManifestFormat::Oci).unwrap()
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn unpack(layer: &ImageLayer, diff_id: &oci_spec::image::Digest) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let root = RootDir::open(tmp.path()).unwrap();
    let opts = UnpackOptions { ownership: OwnershipMode::Chown(IdMaps::default()) };
    let d = &layer.descriptor;
    unpack_verified(&root, &layer.blob, (d.codec, d.digest.digest(), diff_id), &opts, &Exclusions::none())
        .map(|_| ())
        .map_err(|e| error_chain(&e))
}

#[test]
fn a_good_layer_unpacks_and_damage_or_a_wrong_diff_id_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path());
    let layer = &img.layers[0];
    unpack(layer, layer.descriptor.diff_id.digest()).unwrap();
    // A base whose config lists another diff_id.
    let wrong: oci_spec::image::Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
    let err = unpack(layer, &wrong).unwrap_err();
    assert!(err.contains("diff_id") && err.contains("does not match"), "{err}");
    // A bit flipped in the stored blob (inside the gzip stream, past its header).
    flip(&layer.blob, 40);
    let err = unpack(layer, layer.descriptor.diff_id.digest()).unwrap_err();
    assert!(err.contains("does not match") || err.contains("corrupt") || err.contains("invalid"), "{err}");
}

#[rstest::rstest]
#[case::oci_layout(true)]
#[case::docker_archive(false)]
fn outputs_are_verified_copies(#[case] layout: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path());
    let out = tmp.path().join("out");
    let write = |img: &AssembledImage| {
        if layout {
            write_oci_layout(&out, img, Some("t"))
        } else {
            write_docker_archive_file(&out, img, &["r/a:t".into()])
        }
    };
    write(&img).unwrap();
    if layout {
        let placed = out.join("blobs/sha256").join(img.layers[0].descriptor.digest.hex());
        assert_eq!(std::fs::read(&placed).unwrap(), std::fs::read(&img.layers[0].blob).unwrap());
        assert_eq!(std::fs::metadata(&placed).unwrap().nlink(), 1, "the output must not be a hard link into the store");
        std::fs::remove_dir_all(&out).unwrap();
    } else {
        std::fs::remove_file(&out).unwrap();
    }
    flip(&img.layers[0].blob, 1000);
    let err = write(&img).unwrap_err();
    let msg = format!("{err}: {:?}", std::error::Error::source(&err).map(ToString::to_string));
    assert!(msg.contains("does not match its digest"), "{msg}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("out"))
        .collect();
    if !layout {
        assert!(leftovers.is_empty(), "a partial archive was left: {leftovers:?}");
    } else {
        let blobs: Vec<_> =
            std::fs::read_dir(out.join("blobs/sha256")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(blobs.is_empty(), "a damaged or partial blob was placed: {blobs:?}");
    }
}
