//! Benchmark driver for `bench/layers.sh` (release mode). Prints one JSON line.
//!
//! `snapshot_bench layer DIR OUT gzip|gzip-serial|zstd|none LEVEL [ZSTD_WORKERS [GZIP_WORKERS [STORE]]]`
//! — full snapshot + compress DIR. `gzip-serial` is the pre-parallel pipeline (tar thread +
//! one flate2 `GzEncoder` thread); STORE 0 turns off stored incompressible gzip blocks.
//! `snapshot_bench index DIR INDEX` — write the stat index of DIR.
//! `snapshot_bench diff DIR INDEX` — native diff of DIR against INDEX.
//! `snapshot_bench upper UPPER` — convert an overlayfs upper directory.

use std::path::Path;
use std::time::Instant;

use rbuild_builder::layer::snapshot::native;
use rbuild_builder::layer::{write_layer, Compression, GzipOptions, LayerOptions};

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).ok_or("missing argument");
    let start = Instant::now();
    match arg(1)? {
        "layer" => {
            let dir = Path::new(arg(2)?);
            let level: i32 = arg(5)?.parse()?;
            let compression = match arg(4)? {
                "gzip" => Compression::Gzip { level: level as u32 },
                "zstd" => Compression::Zstd { level },
                _ => Compression::None,
            };
            let zstd_workers = args.get(6).map(|w| w.parse()).transpose()?.unwrap_or(0);
            let workers = args.get(7).map(|w| w.parse()).transpose()?.unwrap_or(1);
            let store_incompressible = args.get(8).is_none_or(|s| s != "0");
            let gzip = GzipOptions { workers, store_incompressible };
            let opts = LayerOptions { compression, zstd_workers, gzip, ..Default::default() };
            let entries = native::all_entries(dir)?;
            let out = std::io::BufWriter::new(std::fs::File::create(arg(3)?)?);
            let desc = if arg(4)? == "gzip-serial" {
                // The sink is written on the pipeline's compressor thread, as before.
                let gz =
                    flate2::GzBuilder::new().operating_system(255).write(out, flate2::Compression::new(level as u32));
                let (mut desc, gz) = write_layer(gz, dir, &entries, &opts)?;
                desc.size = gz.finish()?.into_inner().map_err(|e| e.into_error())?.metadata()?.len();
                desc
            } else {
                write_layer(out, dir, &entries, &opts)?.0
            };
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{{\"mode\":\"layer\",\"codec\":\"{}\",\"level\":{level},\"secs\":{secs:.3},\"tar_mb\":{:.1},\"blob_mb\":{:.1},\"mb_per_s\":{:.1},\"peak_rss_mb\":{:.1}}}",
                arg(4)?,
                desc.uncompressed_size as f64 / 1e6,
                desc.size as f64 / 1e6,
                desc.uncompressed_size as f64 / 1e6 / secs,
                peak_rss_kb() as f64 / 1024.0
            );
        }
        "index" => {
            let n = native::write_index(Path::new(arg(2)?), Path::new(arg(3)?))?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            println!(
                "{{\"mode\":\"index\",\"entries\":{n},\"ms\":{ms:.1},\"peak_rss_mb\":{:.1}}}",
                peak_rss_kb() as f64 / 1024.0
            );
        }
        "diff" => {
            let d = native::diff(Path::new(arg(2)?), Path::new(arg(3)?))?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            println!(
                "{{\"mode\":\"diff\",\"changed\":{},\"ms\":{ms:.1},\"peak_rss_mb\":{:.1}}}",
                d.entries.len(),
                peak_rss_kb() as f64 / 1024.0
            );
        }
        "upper" => {
            let entries = rbuild_builder::layer::snapshot::overlay::upper_changes(Path::new(arg(2)?))?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            println!("{{\"mode\":\"overlay-upper\",\"changed\":{},\"ms\":{ms:.2}}}", entries.len());
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
