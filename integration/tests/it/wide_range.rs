//! A build user whose subordinate range is far larger than 65536 ids (`rbuild-wide`, 600000
//! ids, made by integration/scripts/test-users.sh): the whole range is mapped, so a RUN can
//! chown to uid 491327, the pushed layer keeps that owner, and a later build FROM that image
//! unpacks the layer again (the ids exist in its user namespace too).

use std::os::unix::fs::MetadataExt;

use crate::build::{chown_to, make_readable, ok, Harness};

const WIDE_USER: &str = "rbuild-wide";
const HIGH_ID: u32 = 491_327;

#[tokio::test]
async fn a_600000_id_range_builds_layers_owned_by_uid_491327() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let dir = h.shared.path().join("wide");
    let (first, second) = (dir.join("first"), dir.join("second"));
    for d in [&first, &second] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(
        first.join("Dockerfile"),
        format!("ARG BASE\nFROM ${{BASE}}\nRUN mkdir /high && touch /high/f && chown -R {HIGH_ID}:{HIGH_ID} /high\n"),
    )
    .unwrap();
    std::fs::write(second.join("Dockerfile"), "ARG IMG\nFROM ${IMG}\nRUN stat -c %u:%g /high/f > /owner.txt\n")
        .unwrap();
    make_readable(&dir);
    let image = h.image("wide/high:v1");
    let child = h.image("wide/child:v1");
    let (cache1, cache2) = (h.shared.path().join("cache-wide-1"), h.shared.path().join("cache-wide-2"));
    for c in [&cache1, &cache2] {
        std::fs::create_dir(c).unwrap();
        chown_to(WIDE_USER, c);
    }
    ok(h.build_as(
        WIDE_USER,
        &cache1,
        &["--context", first.to_str().unwrap(), "--build-arg", &h.base(), "--destination", &image],
    ));
    let root = h.unpack(&image);
    let meta = std::fs::metadata(root.join("high/f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (HIGH_ID, HIGH_ID), "owner of /high/f in the pushed layer");

    // A fresh cache: the layer with uid 491327 is pulled and unpacked as rbuild-wide.
    let img_arg = format!("IMG={image}");
    ok(h.build_as(
        WIDE_USER,
        &cache2,
        &["--context", second.to_str().unwrap(), "--build-arg", &img_arg, "--destination", &child],
    ));
    let root = h.unpack(&child);
    assert_eq!(std::fs::read_to_string(root.join("owner.txt")).unwrap(), format!("{HIGH_ID}:{HIGH_ID}\n"));
    assert_eq!(std::fs::metadata(root.join("high/f")).unwrap().uid(), HIGH_ID);
}
