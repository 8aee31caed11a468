//! One-pass layer writing: tar → sha256 (diff id) → compressor → sha256 (digest) → sink.
//!
//! The tar side (file reads, headers, diff-id hashing) runs on the calling thread and
//! hands 256 KiB chunks through a bounded channel to a compressor thread, so the cores
//! work at once while memory stays flat (a handful of recycled chunks). gzip fans the
//! chunks out further to [`GzipOptions::workers`] threads (see `parallel_gzip`).

use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use sha2::{Digest as _, Sha256};

use super::parallel_gzip::{self, GzipOptions};
use super::tar_writer::{write_tar, LayerEntry, TarWriteError};
use super::{Codec, Compression, DiffId, LayerDescriptor, LayerDigest, LayerOptions};

/// One chunk is one parallel gzip block, so gzip needs no re-cutting.
const CHUNK: usize = parallel_gzip::BLOCK;
const IN_FLIGHT: usize = 4;

/// Errors writing a layer blob.
#[derive(Debug, thiserror::Error)]
pub enum LayerWriteError {
    /// Producing the tar stream failed.
    #[error("cannot build layer tar")]
    Tar {
        #[source]
        source: TarWriteError,
    },
    /// Compressing or writing the blob failed.
    #[error("cannot write compressed layer")]
    Sink {
        #[source]
        source: io::Error,
    },
    /// The compressor thread panicked (a bug).
    #[error("layer compressor thread panicked")]
    Panicked,
}

/// Writes the change set `entries` (sorted, relative to `src`) as a layer blob into `out`.
/// Returns the descriptor (digest, diff id, sizes, media type) and the sink.
pub fn write_layer<W: Write + Send>(
    out: W,
    src: &Path,
    entries: &[LayerEntry],
    opts: &LayerOptions,
) -> Result<(LayerDescriptor, W), LayerWriteError> {
    write_stream(out, opts, |w| write_tar(w, src, entries, opts.mtime, &opts.ids).map(|_| ()))
}

/// Runs `produce` (which writes an uncompressed tar) through the one-pass pipeline.
pub fn write_stream<W, F>(out: W, opts: &LayerOptions, produce: F) -> Result<(LayerDescriptor, W), LayerWriteError>
where
    W: Write + Send,
    F: FnOnce(&mut ChunkWriter) -> Result<(), TarWriteError>,
{
    let (tx, rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
    let (back_tx, back_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
    let compression = opts.compression;
    let workers = opts.zstd_workers;
    let gzip = opts.gzip;
    std::thread::scope(|s| {
        let consumer = s.spawn(move || compress(out, compression, workers, gzip, rx, back_tx));
        let mut w =
            ChunkWriter { buf: Vec::with_capacity(CHUNK), tx: Some(tx), back: back_rx, hash: Sha256::new(), len: 0 };
        let produced = produce(&mut w).and_then(|()| w.close().map_err(|source| TarWriteError::Write { source }));
        drop(w); // closes the channel so the consumer ends even after an error
        let consumed = consumer.join().map_err(|_| LayerWriteError::Panicked)?;
        // A consumer error explains a producer's broken pipe, so report it first.
        let (out, size, digest) = consumed.map_err(|source| LayerWriteError::Sink { source })?;
        let (diff_id, uncompressed_size) = produced.map_err(|source| LayerWriteError::Tar { source })?;
        let desc = LayerDescriptor {
            digest,
            diff_id,
            size,
            uncompressed_size,
            codec: compression.codec(),
            media_type: compression.codec().media_type(opts.format),
        };
        tracing::debug!(digest = %desc.digest, diff_id = %desc.diff_id, size, uncompressed_size, "wrote layer");
        Ok((desc, out))
    })
}

/// The tar side of the pipeline: hashes (diff id) and forwards uncompressed bytes.
pub struct ChunkWriter {
    buf: Vec<u8>,
    tx: Option<SyncSender<Vec<u8>>>,
    back: Receiver<Vec<u8>>,
    hash: Sha256,
    len: u64,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self.back.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.buf, next);
        self.hash.update(&full);
        self.len += full.len() as u64;
        let tx = self.tx.as_ref().ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        tx.send(full).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "layer compressor stopped"))
    }

    fn close(&mut self) -> io::Result<(DiffId, u64)> {
        self.send()?;
        self.tx = None;
        let hash = std::mem::take(&mut self.hash).finalize();
        Ok((DiffId::from_sha256(&hash), self.len))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts and hashes what reaches the sink (the blob digest).
struct HashCount<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for HashCount<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hash.update(&data[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn compress<W: Write>(
    out: W,
    compression: Compression,
    zstd_workers: u32,
    gzip: GzipOptions,
    rx: Receiver<Vec<u8>>,
    back: SyncSender<Vec<u8>>,
) -> io::Result<(W, u64, LayerDigest)> {
    let sink = HashCount { inner: out, hash: Sha256::new(), len: 0 };
    let feed = |enc: &mut dyn Write| -> io::Result<()> {
        for mut chunk in rx.iter() {
            enc.write_all(&chunk)?;
            chunk.clear();
            let _ = back.try_send(chunk); // recycling is best effort
        }
        Ok(())
    };
    let mut sink = match compression {
        Compression::None => {
            let mut s = sink;
            feed(&mut s)?;
            s
        }
        Compression::Gzip { level } => {
            let mut s = sink;
            let recycle = |mut chunk: Vec<u8>| {
                chunk.clear();
                let _ = back.try_send(chunk); // recycling is best effort
            };
            parallel_gzip::write_member(&mut s, level, gzip, rx.iter(), recycle)?;
            s
        }
        Compression::Zstd { level } => {
            let mut enc = zstd::stream::write::Encoder::new(sink, level)?;
            if zstd_workers > 0 {
                enc.multithread(zstd_workers)?;
            }
            feed(&mut enc)?;
            enc.finish()?
        }
    };
    sink.flush()?;
    let digest = LayerDigest::from_sha256(&sink.hash.finalize());
    Ok((sink.inner, sink.len, digest))
}

impl Codec {
    /// File-name extension conventionally used for this codec.
    pub fn extension(self) -> &'static str {
        match self {
            Codec::None => "tar",
            Codec::Gzip => "tar.gz",
            Codec::Zstd => "tar.zst",
        }
    }
}
