//! pigz-style parallel gzip: one gzip member whose bytes do not depend on the thread count.
//!
//! The uncompressed stream is cut into fixed [`BLOCK`]-sized blocks. Each block is
//! compressed on its own as raw deflate, primed with the previous 32 KiB of input as preset
//! dictionary (so matches reach back across block edges as in a serial stream), and ends
//! with a sync flush so the blocks concatenate byte-aligned; the last block ends the
//! deflate stream. Blocks whose bytes look random (already-compressed files) are written as
//! stored deflate blocks instead, costing a copy rather than a level-6 search.
//!
//! Every block's bytes depend only on its input, the 32 KiB before it, whether it is last
//! and the settings, so any number of workers produces the same member (and digest).
//! Memory stays flat: at most `2 × workers + 2` blocks are in flight.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Mutex;

use flate2::{Compress, CompressError, FlushCompress, Status};

/// Uncompressed bytes per block: fixed (never derived from the core count) so the output
/// is the same on every machine.
pub const BLOCK: usize = 256 * 1024;

/// Deflate's window: how much preceding input primes each block.
const WINDOW: usize = 32 * 1024;

/// Largest payload of one stored deflate block.
const STORED_MAX: usize = 65_535;

/// Parallel gzip settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GzipOptions {
    /// Compressor threads (0 counts as 1). Does not change the output bytes.
    pub workers: usize,
    /// Write blocks whose byte statistics say deflate cannot shrink them as stored blocks.
    /// Changes the output bytes, so it is part of the layer cache key.
    pub store_incompressible: bool,
}

impl Default for GzipOptions {
    fn default() -> Self {
        GzipOptions { workers: 1, store_incompressible: true }
    }
}

struct Job {
    seq: u64,
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

struct Done {
    seq: u64,
    out: Result<Vec<u8>, CompressError>,
}

/// Writes one gzip member of the concatenated `chunks` to `sink`. `recycle` gets the
/// input buffers back once compressed.
pub(super) fn write_member<W, I, R>(
    sink: &mut W,
    level: u32,
    opts: GzipOptions,
    chunks: I,
    recycle: R,
) -> io::Result<()>
where
    W: Write,
    I: IntoIterator<Item = Vec<u8>>,
    R: Fn(Vec<u8>) + Sync,
{
    let level = level.min(9);
    let workers = opts.workers.max(1);
    let (jobs_tx, jobs_rx) = sync_channel::<Job>(workers);
    let jobs_rx = Mutex::new(jobs_rx);
    let (done_tx, done_rx) = channel::<Done>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (jobs, done, recycle) = (&jobs_rx, done_tx.clone(), &recycle);
            s.spawn(move || worker(level, opts.store_incompressible, jobs, done, recycle));
        }
        drop(done_tx);
        let mut ordered = Ordered { sink: &mut *sink, done: done_rx, ready: BTreeMap::new(), next: 0 };
        ordered.sink.write_all(&header(level))?;
        let mut feeder = Feeder { jobs: jobs_tx, dict: Vec::new(), seq: 0, cap: 2 * workers as u64 + 2 };
        let mut crc = crc32fast::Hasher::new();
        let mut len = 0u64;
        let mut pending: Option<Vec<u8>> = None;
        let mut partial: Vec<u8> = Vec::new();
        for chunk in reblock(chunks, &mut partial) {
            crc.update(&chunk);
            len += chunk.len() as u64;
            if let Some(prev) = pending.replace(chunk) {
                feeder.submit(prev, false, &mut ordered)?;
            }
        }
        let tail = std::mem::take(&mut partial);
        crc.update(&tail);
        len += tail.len() as u64;
        match pending {
            Some(prev) if tail.is_empty() => feeder.submit(prev, true, &mut ordered)?,
            Some(prev) => {
                feeder.submit(prev, false, &mut ordered)?;
                feeder.submit(tail, true, &mut ordered)?;
            }
            None => feeder.submit(tail, true, &mut ordered)?,
        }
        let total = feeder.seq;
        drop(feeder); // ends the workers once the queue drains
        while ordered.next < total {
            ordered.wait_one()?;
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc.finalize().to_le_bytes());
        trailer[4..].copy_from_slice(&(len as u32).to_le_bytes()); // ISIZE is the length mod 2^32
        ordered.sink.write_all(&trailer)
    })
}

/// Re-cuts arbitrary chunks into full [`BLOCK`]s; the remainder stays in `partial`.
fn reblock<'a, I>(chunks: I, partial: &'a mut Vec<u8>) -> impl Iterator<Item = Vec<u8>> + 'a
where
    I: IntoIterator<Item = Vec<u8>>,
    I::IntoIter: 'a,
{
    let mut full: Vec<Vec<u8>> = Vec::new();
    let mut chunks = chunks.into_iter();
    std::iter::from_fn(move || loop {
        if let Some(b) = full.pop() {
            return Some(b);
        }
        let chunk = chunks.next()?;
        if partial.is_empty() && chunk.len() == BLOCK {
            return Some(chunk); // the common case: no copy
        }
        let mut rest = chunk.as_slice();
        while !rest.is_empty() {
            let n = rest.len().min(BLOCK - partial.len());
            partial.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if partial.len() == BLOCK {
                full.push(std::mem::replace(partial, Vec::with_capacity(BLOCK)));
            }
        }
        full.reverse();
    })
}

/// Hands blocks to the workers with the preceding window as dictionary.
struct Feeder {
    jobs: SyncSender<Job>,
    dict: Vec<u8>,
    seq: u64,
    cap: u64,
}

impl Feeder {
    fn submit<W: Write>(&mut self, data: Vec<u8>, last: bool, ordered: &mut Ordered<'_, W>) -> io::Result<()> {
        while self.seq - ordered.next >= self.cap {
            ordered.wait_one()?;
        }
        let next_dict = if data.len() >= WINDOW {
            data[data.len() - WINDOW..].to_vec()
        } else {
            let mut d = std::mem::take(&mut self.dict);
            d.extend_from_slice(&data);
            d.split_off(d.len().saturating_sub(WINDOW))
        };
        let dict = std::mem::replace(&mut self.dict, next_dict);
        let job = Job { seq: self.seq, dict, data, last };
        self.jobs.send(job).map_err(|_| stopped())?;
        self.seq += 1;
        Ok(())
    }
}

/// Writes compressed blocks to the sink in input order.
struct Ordered<'a, W> {
    sink: &'a mut W,
    done: Receiver<Done>,
    ready: BTreeMap<u64, Vec<u8>>,
    next: u64,
}

impl<W: Write> Ordered<'_, W> {
    /// Waits for one finished block, then writes every block that is now next in line.
    fn wait_one(&mut self) -> io::Result<()> {
        let done = self.done.recv().map_err(|_| stopped())?;
        let out = done.out.map_err(io::Error::other)?;
        self.ready.insert(done.seq, out);
        while let Some(out) = self.ready.remove(&self.next) {
            self.sink.write_all(&out)?;
            self.next += 1;
        }
        Ok(())
    }
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "gzip worker stopped")
}

fn worker<R: Fn(Vec<u8>)>(level: u32, store: bool, jobs: &Mutex<Receiver<Job>>, done: Sender<Done>, recycle: &R) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let out = if store && looks_random(&job.data) {
            Ok(stored(&job.data, job.last))
        } else {
            deflate(level, &job.dict, &job.data, job.last)
        };
        recycle(job.data);
        if done.send(Done { seq: job.seq, out }).is_err() {
            return;
        }
    }
}

/// Raw deflate of one block primed with `dict`; ends with a sync flush, or the final
/// block if `last`.
///
/// A fresh (zeroed) compressor per block, not `Compress::reset`: zlib-rs' reset keeps the
/// old window bytes and hash chains, and the match finder peeks at them near the end of
/// the input, so a reused compressor's output depended on which block that worker had
/// compressed before (valid, but a few bytes different from run to run on real data).
/// Zeroing ~300 KB per 256 KiB block is noise next to deflating it.
fn deflate(level: u32, dict: &[u8], data: &[u8], last: bool) -> Result<Vec<u8>, CompressError> {
    let mut z = Compress::new(flate2::Compression::new(level), false);
    let z = &mut z;
    prime(z, dict)?;
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 64);
    let mut input = data;
    loop {
        if out.len() == out.capacity() {
            out.reserve(64 * 1024);
        }
        let before = z.total_in();
        let status = z.compress_vec(input, &mut out, flush)?;
        input = &input[usize::try_from(z.total_in() - before).unwrap_or(input.len())..];
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once deflate stops with output space to spare.
            _ if !last && input.is_empty() && out.len() < out.capacity() => return Ok(out),
            _ => {}
        }
    }
}

#[cfg(any(feature = "gzip-zlib-rs", feature = "gzip-zlib-ng"))]
fn prime(z: &mut Compress, dict: &[u8]) -> Result<(), CompressError> {
    if !dict.is_empty() {
        z.set_dictionary(dict)?;
    }
    Ok(())
}

/// miniz_oxide has no preset dictionary: its blocks are compressed independently (still
/// one valid member, slightly larger).
#[cfg(not(any(feature = "gzip-zlib-rs", feature = "gzip-zlib-ng")))]
fn prime(_: &mut Compress, _: &[u8]) -> Result<(), CompressError> {
    Ok(())
}

/// `data` as stored deflate blocks (the last one final if `last`). Stored blocks are
/// byte-aligned, so they need no flush marker before the next block.
fn stored(data: &[u8], last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 5 * (data.len() / STORED_MAX + 1));
    let mut parts = data.chunks(STORED_MAX).peekable();
    while let Some(part) = parts.next() {
        let len = part.len() as u16; // chunks() keeps it ≤ STORED_MAX
        out.push(u8::from(last && parts.peek().is_none()));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// True if the block's byte distribution is so close to uniform that deflate cannot win
/// more than a sliver: the collision entropy (Rényi order 2) exceeds ~7.9 bits/byte, i.e.
/// `Σ count² · 239 < n²`. Integer arithmetic keeps the decision exact on every machine.
/// Long repeats of random bytes inside one window would be missed; those are rare in
/// layers (duplicate files are further apart than deflate's 32 KiB window anyway).
fn looks_random(data: &[u8]) -> bool {
    if data.len() < 4096 {
        return false;
    }
    let mut counts = [[0u32; 256]; 4];
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        counts[0][usize::from(q[0])] += 1;
        counts[1][usize::from(q[1])] += 1;
        counts[2][usize::from(q[2])] += 1;
        counts[3][usize::from(q[3])] += 1;
    }
    for &b in quads.remainder() {
        counts[0][usize::from(b)] += 1;
    }
    let squares: u128 = (0..256)
        .map(|i| {
            let c = u128::from(counts[0][i] + counts[1][i] + counts[2][i] + counts[3][i]);
            c * c
        })
        .sum();
    let n = data.len() as u128;
    squares * 239 < n * n
}

/// The 10-byte gzip header: no name, no mtime (reproducible), OS "unknown" (255), XFL as
/// zlib sets it for the level.
fn header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        0 | 1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randomness_decision() {
        let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog 0123456789\n".repeat(2000);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..BLOCK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let cases: [(&str, &[u8], bool); 4] = [
            ("text", &text, false),
            ("random", &random, true),
            ("short random", &random[..100], false),
            ("zeros", &[0u8; 8192], false),
        ];
        for (name, data, want) in cases {
            assert_eq!(looks_random(data), want, "{name}");
        }
    }

    #[test]
    fn reblock_cuts_full_blocks() {
        let sizes: [&[usize]; 4] = [&[], &[BLOCK], &[1, BLOCK, BLOCK - 1], &[3 * BLOCK + 5]];
        for chunks in sizes {
            let total: usize = chunks.iter().sum();
            let mut partial = Vec::new();
            let blocks: Vec<usize> =
                reblock(chunks.iter().map(|&n| vec![7u8; n]), &mut partial).map(|b| b.len()).collect();
            assert!(blocks.iter().all(|&n| n == BLOCK), "{chunks:?}");
            assert_eq!(blocks.len() * BLOCK + partial.len(), total, "{chunks:?}");
            assert!(partial.len() < BLOCK);
        }
    }
}
