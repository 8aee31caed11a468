//! PAX sparse files as GNU tar writes them (formats 0.0, 0.1 and 1.0; old GNU sparse entries
//! are read by the `tar` crate itself). The PAX records give the real name and size; the data
//! map comes from the records (0.0: repeated `GNU.sparse.offset`/`numbytes`; 0.1:
//! `GNU.sparse.map`) or from the start of the entry's data (1.0). The data regions are written
//! at their offsets, so holes stay holes where the file system allows. Maps are validated as
//! Go's `archive/tar` does: ordered, non-overlapping, inside the real size, and exactly
//! covering the stored data.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// Longest 1.0 map read from an entry's data (a map of ~40,000 regions).
const MAX_MAP_BYTES: u64 = 1 << 20;
/// Most regions a map may list.
const MAX_REGIONS: usize = 1 << 16;

/// Why a sparse entry cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum SparseError {
    /// The PAX records or the in-data map do not describe a valid file.
    #[error("invalid sparse map: {0}")]
    Map(&'static str),
    /// The archive ended inside the entry's data.
    #[error("sparse data is shorter than its map says")]
    Truncated,
    /// Reading the archive or writing the file failed.
    #[error("writing sparse data")]
    Io(#[from] io::Error),
}

/// Where the data map is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MapSource {
    /// In the PAX records (0.0, 0.1).
    Records(Vec<(u64, u64)>),
    /// At the start of the entry's data (1.0).
    InData,
}

/// A PAX sparse entry: its real name (if the records carry one), real size and map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaxSparse {
    /// `GNU.sparse.name`: the real path (the header names `GNUSparseFile.<pid>/…`).
    pub name: Option<Vec<u8>>,
    /// `GNU.sparse.realsize` / `GNU.sparse.size`.
    pub real_size: u64,
    map: MapSource,
}

fn number(value: &[u8]) -> Result<u64, SparseError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or(SparseError::Map("a number is not a number"))
}

/// The sparse description in an entry's PAX records, or `None` for an ordinary file.
/// `records` are the entry's PAX (key, value) pairs in order.
pub fn detect<'a>(records: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<Option<PaxSparse>, SparseError> {
    let (mut name, mut size, mut major, mut map, mut offsets, mut lengths) =
        (None, None, None, None, Vec::new(), Vec::new());
    for (key, value) in records {
        match key {
            "GNU.sparse.name" => name = Some(value.to_vec()),
            "GNU.sparse.size" | "GNU.sparse.realsize" => size = Some(number(value)?),
            "GNU.sparse.major" => major = Some(number(value)?),
            "GNU.sparse.map" => map = Some(value.to_vec()),
            "GNU.sparse.offset" => offsets.push(number(value)?),
            "GNU.sparse.numbytes" => lengths.push(number(value)?),
            _ => {}
        }
    }
    let sparse = major.is_some() || map.is_some() || !offsets.is_empty() || size.is_some();
    if !sparse {
        return Ok(None);
    }
    let real_size = size.ok_or(SparseError::Map("no real size"))?;
    let map = match (major, map) {
        (Some(1), _) => MapSource::InData,
        (Some(m), _) if m != 0 => return Err(SparseError::Map("unknown sparse format version")),
        (_, Some(list)) => MapSource::Records(pairs(&parse_list(&list, b',')?)?),
        (_, None) => {
            if offsets.len() != lengths.len() {
                return Err(SparseError::Map("offsets and sizes do not pair up"));
            }
            MapSource::Records(offsets.into_iter().zip(lengths).collect())
        }
    };
    Ok(Some(PaxSparse { name, real_size, map }))
}

fn parse_list(list: &[u8], sep: u8) -> Result<Vec<u64>, SparseError> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    list.split(|b| *b == sep).map(number).collect()
}

fn pairs(numbers: &[u64]) -> Result<Vec<(u64, u64)>, SparseError> {
    if numbers.len() % 2 != 0 || numbers.len() / 2 > MAX_REGIONS {
        return Err(SparseError::Map("the map is not a list of (offset, size) pairs"));
    }
    Ok(numbers.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// Reads a 1.0 map from the start of `data` (decimal lines, padded to 512 bytes); returns
/// the map and the bytes it took.
fn read_data_map<R: Read>(data: &mut R) -> Result<(Vec<(u64, u64)>, u64), SparseError> {
    let mut buf = Vec::new();
    let mut block = [0u8; 512];
    loop {
        data.read_exact(&mut block).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => SparseError::Truncated,
            _ => SparseError::Io(e),
        })?;
        buf.extend_from_slice(&block);
        let lines: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
        // The last piece is unterminated (or padding): only complete lines count.
        let complete = &lines[..lines.len() - 1];
        if let Some(first) = complete.first() {
            let count = usize::try_from(number(first)?).unwrap_or(usize::MAX);
            if count > MAX_REGIONS {
                return Err(SparseError::Map("too many regions"));
            }
            if complete.len() > 2 * count {
                let numbers: Vec<u64> = complete[1..=2 * count].iter().map(|l| number(l)).collect::<Result<_, _>>()?;
                return Ok((pairs(&numbers)?, buf.len() as u64));
            }
        }
        if buf.len() as u64 >= MAX_MAP_BYTES {
            return Err(SparseError::Map("the map is too long"));
        }
    }
}

/// Ordered, non-overlapping regions inside `real_size` that hold exactly `stored` bytes.
fn validate(map: &[(u64, u64)], real_size: u64, stored: u64) -> Result<(), SparseError> {
    let mut end = 0u64;
    let mut total = 0u64;
    for &(offset, len) in map {
        let region_end = offset.checked_add(len).ok_or(SparseError::Map("a region overflows"))?;
        if offset < end || region_end > real_size {
            return Err(SparseError::Map("regions overlap, are out of order or pass the end"));
        }
        end = region_end;
        total = total.checked_add(len).ok_or(SparseError::Map("a region overflows"))?;
    }
    if total != stored {
        return Err(SparseError::Map("the regions do not match the stored data"));
    }
    Ok(())
}

/// Writes the entry's data (`stored` bytes in `data`) into `file` at the map's offsets and
/// sizes the file to the real size; returns the data bytes written.
pub fn write<R: Read>(sparse: &PaxSparse, data: &mut R, stored: u64, file: &mut File) -> Result<u64, SparseError> {
    let (map, stored) = match &sparse.map {
        MapSource::Records(map) => (map.clone(), stored),
        MapSource::InData => {
            let (map, used) = read_data_map(data)?;
            (map, stored.checked_sub(used).ok_or(SparseError::Truncated)?)
        }
    };
    validate(&map, sparse.real_size, stored)?;
    for (offset, len) in map {
        if len == 0 {
            continue;
        }
        file.seek(SeekFrom::Start(offset))?;
        if io::copy(&mut data.take(len), file)? != len {
            return Err(SparseError::Truncated);
        }
    }
    file.set_len(sparse.real_size)?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(pairs: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
        pairs.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
    }

    #[rstest::rstest]
    #[case::plain(&[("path", "a")], None)]
    #[case::v00(&[("GNU.sparse.size", "100"), ("GNU.sparse.numblocks", "2"), ("GNU.sparse.offset", "0"), ("GNU.sparse.numbytes", "5"), ("GNU.sparse.offset", "90"), ("GNU.sparse.numbytes", "10")], Some(MapSource::Records(vec![(0, 5), (90, 10)])))]
    #[case::v01(&[("GNU.sparse.size", "100"), ("GNU.sparse.map", "0,5,90,10"), ("GNU.sparse.name", "f")], Some(MapSource::Records(vec![(0, 5), (90, 10)])))]
    #[case::v10(&[("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"), ("GNU.sparse.realsize", "100"), ("GNU.sparse.name", "f")], Some(MapSource::InData))]
    fn detects_each_version(#[case] records: &[(&str, &str)], #[case] want: Option<MapSource>) {
        let got = detect(rec(records)).unwrap();
        assert_eq!(got.map(|s| s.map), want);
    }

    #[rstest::rstest]
    #[case::odd_map(&[("GNU.sparse.size", "9"), ("GNU.sparse.map", "0,5,7")])]
    #[case::unpaired(&[("GNU.sparse.size", "9"), ("GNU.sparse.offset", "0")])]
    #[case::no_size(&[("GNU.sparse.map", "0,5")])]
    #[case::garbage(&[("GNU.sparse.size", "x")])]
    #[case::version(&[("GNU.sparse.major", "7"), ("GNU.sparse.realsize", "1")])]
    fn refuses_bad_records(#[case] records: &[(&str, &str)]) {
        assert!(detect(rec(records)).is_err());
    }

    #[rstest::rstest]
    #[case::overlap(&[(0, 10), (5, 10)], 100, 20)]
    #[case::past_end(&[(95, 10)], 100, 10)]
    #[case::data_mismatch(&[(0, 10)], 100, 11)]
    #[case::overflow(&[(u64::MAX, 2)], u64::MAX, 2)]
    fn refuses_bad_maps(#[case] map: &[(u64, u64)], #[case] size: u64, #[case] stored: u64) {
        assert!(validate(map, size, stored).is_err());
    }

    #[test]
    fn writes_regions_at_their_offsets_with_holes_between() {
        let mut data_map = b"2\n0\n3\n8192\n2\n".to_vec();
        data_map.resize(512, 0);
        data_map.extend_from_slice(b"abcXY");
        let sparse = PaxSparse { name: None, real_size: 10000, map: MapSource::InData };
        let mut file = tempfile::tempfile().unwrap();
        let written = write(&sparse, &mut data_map.as_slice(), data_map.len() as u64, &mut file).unwrap();
        assert_eq!(written, 5);
        let mut content = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut content).unwrap();
        assert_eq!(content.len(), 10000);
        assert_eq!(&content[..3], b"abc");
        assert_eq!(&content[8192..8194], b"XY");
        assert!(content[3..8192].iter().all(|b| *b == 0));
    }
}
