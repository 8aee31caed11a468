//! Parallel gzip: one valid member that flate2 and the system `gzip` read, with bytes that
//! do not depend on the worker count, and one-pass digests that match the bytes.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use flate2::read::GzDecoder;
use rbuild_builder::layer::compress::ChunkWriter;
use rbuild_builder::layer::snapshot::native::all_entries;
use rbuild_builder::layer::{
    write_layer, write_stream, Compression, GzipOptions, LayerDescriptor, LayerOptions, TarWriteError, GZIP_BLOCK,
};
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Deterministic pseudo-random bytes (xorshift64).
fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Word salad: compressible, but not one repeated line.
fn text(n: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "layer", "tar", "gzip", "block ", "rootless", "image\n", "the ", "of ", "digest", "zstd", "builder ", "cache, ",
    ];
    let picks = random(n, 7);
    let mut out = Vec::with_capacity(n + 16);
    for p in picks {
        if out.len() >= n {
            break;
        }
        out.extend_from_slice(WORDS[usize::from(p) % WORDS.len()].as_bytes());
    }
    out.truncate(n);
    out
}

/// Alternating text and random runs that straddle block edges.
fn mixed(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    while out.len() < n {
        let run = 100_000 + (i as usize * 37_000) % 200_000;
        out.extend(if i.is_multiple_of(2) { text(run) } else { random(run, i) });
        i += 1;
    }
    out.truncate(n);
    out
}

fn gzip(data: &[u8], gzip: GzipOptions) -> (LayerDescriptor, Vec<u8>) {
    let opts = LayerOptions { compression: Compression::Gzip { level: 6 }, gzip, ..Default::default() };
    // Odd write sizes so block boundaries never line up with writes.
    write_stream(Vec::new(), &opts, |w: &mut ChunkWriter| {
        data.chunks(77_777).try_for_each(|c| w.write_all(c)).map_err(|source| TarWriteError::Write { source })
    })
    .unwrap()
}

fn system_gunzip(blob: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip").arg("-dc").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let blob = blob.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&blob));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip -dc failed");
    out.stdout
}

#[test]
fn round_trips_with_identical_bytes_for_any_worker_count() {
    let cases: [(&str, Vec<u8>); 8] = [
        ("empty", Vec::new()),
        ("one byte", vec![b'x']),
        ("exactly one block", text(GZIP_BLOCK)),
        ("block + 1", text(GZIP_BLOCK + 1)),
        ("several text blocks", text(5 * GZIP_BLOCK + 123)),
        ("random", random(3 * GZIP_BLOCK + 9, 42)),
        ("random, exactly two blocks", random(2 * GZIP_BLOCK, 5)),
        ("mixed", mixed(6 * GZIP_BLOCK + 4_321)),
    ];
    for (name, data) in &cases {
        for store_incompressible in [true, false] {
            let opts = |workers| GzipOptions { workers, store_incompressible };
            let (desc, blob) = gzip(data, opts(1));
            for workers in [2, 4] {
                assert_eq!(gzip(data, opts(workers)).1, blob, "{name}: {workers} workers differ from 1");
            }
            assert_eq!(desc.digest.to_string(), sha(&blob), "{name}");
            assert_eq!(desc.size, blob.len() as u64, "{name}");
            assert_eq!(desc.diff_id.to_string(), sha(data), "{name}");
            assert_eq!(desc.uncompressed_size, data.len() as u64, "{name}");

            // One member: GzDecoder stops after the first, and nothing may follow it.
            let mut dec = GzDecoder::new(blob.as_slice());
            let mut back = Vec::new();
            dec.read_to_end(&mut back).unwrap();
            assert!(back == *data, "{name} (store={store_incompressible}): flate2 read different bytes");
            assert!(dec.into_inner().is_empty(), "{name}: bytes after the gzip member");
            assert!(
                system_gunzip(&blob) == *data,
                "{name} (store={store_incompressible}): gzip -dc read different bytes"
            );
        }
    }
}

#[test]
fn incompressible_blocks_are_stored_and_text_still_compresses() {
    // (input, store_incompressible, largest blob size as a fraction of the input in ‰)
    let cases: [(&str, Vec<u8>, bool, usize); 4] = [
        ("random stored", random(8 * GZIP_BLOCK, 3), true, 1_001),
        ("random deflated", random(8 * GZIP_BLOCK, 3), false, 1_001),
        ("text stored-mode", text(8 * GZIP_BLOCK), true, 400),
        ("mixed stored-mode", mixed(8 * GZIP_BLOCK), true, 800),
    ];
    for (name, data, store_incompressible, max_permille) in cases {
        let (_, blob) = gzip(&data, GzipOptions { workers: 2, store_incompressible });
        assert!(blob.len() * 1000 <= data.len() * max_permille, "{name}: {} of {}", blob.len(), data.len());
    }
    // Stored blocks are the input plus 5 bytes per started 64 KiB of each block.
    let data = random(4 * GZIP_BLOCK, 11);
    let (_, blob) = gzip(&data, GzipOptions { workers: 2, store_incompressible: true });
    assert_eq!(blob.len(), 10 + data.len() + 4 * 5 * GZIP_BLOCK.div_ceil(65_535) + 8);
}

#[test]
fn tar_of_real_programs_gives_identical_bytes_for_any_worker_count() {
    // The first 300 KB of this machine's programs (real, heterogeneous code and data) as a
    // layer tar, the input on which a reused, reset zlib-rs compressor produced different
    // bytes per worker count (its output depended on the block the worker had compressed
    // before); synthetic text and random data did not show it.
    let t = tempfile::tempdir().unwrap();
    let mut programs: Vec<_> =
        std::fs::read_dir("/usr/bin").unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
    programs.sort();
    for p in programs.iter().filter(|p| p.is_file()).take(400) {
        let mut head = Vec::new();
        std::fs::File::open(p).and_then(|f| f.take(300_000).read_to_end(&mut head)).unwrap();
        std::fs::write(t.path().join(p.file_name().unwrap()), head).unwrap();
    }
    let entries = all_entries(t.path()).unwrap();
    let layer = |workers| {
        let gzip = GzipOptions { workers, store_incompressible: true };
        let opts = LayerOptions { compression: Compression::Gzip { level: 6 }, gzip, ..Default::default() };
        write_layer(Vec::new(), t.path(), &entries, &opts).unwrap()
    };
    let (desc, blob) = layer(1);
    for workers in [2, 3, 4] {
        assert!(layer(workers).1 == blob, "{workers} workers differ from 1");
    }
    let mut tar = Vec::new();
    GzDecoder::new(blob.as_slice()).read_to_end(&mut tar).unwrap();
    assert_eq!(desc.diff_id.to_string(), sha(&tar));
}
