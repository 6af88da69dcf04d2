//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::vec::Vec;

use rota_memflash::{Cut, MemFlash, TornErase, TornWrite};
use rota_store::{Cursor, Error, Store};
use sha2::{Digest, Sha256};

pub type Mem = MemFlash<Vec<u8>>;

pub const SECTOR: usize = 4096;

pub fn sha(d: &[u8]) -> [u8; 32] {
    Sha256::digest(d).into()
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

/// A formatted store of `sectors` sectors with config payload `payload`.
pub fn formatted(sectors: usize, payload: &[u8]) -> Store<Mem> {
    let mut s = Store::new(MemFlash::new(vec![0u8; sectors * SECTOR]));
    s.format(payload).unwrap();
    s
}

/// Stages `data` as `name` from wherever `stage_begin` says to resume, in pieces of `piece` bytes.
pub fn stage(
    s: &mut Store<Mem>,
    name: &[u8],
    data: &[u8],
    version: u32,
    piece: usize,
) -> Result<u32, Error> {
    let resume = s.stage_begin(name, data.len() as u32, &sha(data), version)?;
    let mut off = resume as usize;
    while off < data.len() {
        let n = piece.min(data.len() - off);
        s.stage_write(name, off as u32, &data[off..off + n])?;
        off += n;
    }
    s.stage_finish(name)?;
    Ok(resume)
}

/// Everything a reader can see: live files (name -> (version, contents)) and the config payload.
#[derive(Clone, PartialEq, Eq)]
pub struct View {
    pub files: BTreeMap<Vec<u8>, (u32, Vec<u8>)>,
    pub payload: Vec<u8>,
}

/// Names, versions, sizes and digest prefixes: a failing comparison stays readable.
impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (name, (version, data)) in &self.files {
            let d = sha(data);
            m.entry(
                &String::from_utf8_lossy(name),
                &format_args!(
                    "v{version}, {} bytes, sha {:02x}{:02x}{:02x}{:02x}",
                    data.len(),
                    d[0],
                    d[1],
                    d[2],
                    d[3]
                ),
            );
        }
        m.entry(&"payload", &String::from_utf8_lossy(&self.payload));
        m.finish()
    }
}

/// Reads the visible state through the public API, checking that iteration, `find`, `read` and the
/// digests agree.
pub fn view<F: embedded_storage::nor_flash::NorFlash>(s: &mut Store<F>) -> View {
    let mut files = BTreeMap::new();
    let mut c = Cursor::default();
    while let Some(f) = s.next_file(&mut c).unwrap() {
        let mut data = vec![0u8; f.size as usize];
        // Read in odd pieces to exercise offsets.
        let mut off = 0;
        while off < data.len() {
            let end = (off + 777).min(data.len());
            let n = s.read(&f, off as u32, &mut data[off..end]).unwrap();
            assert_eq!(n, end - off);
            off = end;
        }
        assert_eq!(s.read(&f, f.size, &mut [0; 4]).unwrap(), 0);
        assert_eq!(
            sha(&data),
            f.digest,
            "{:?}: data does not match digest",
            f.name
        );
        assert_eq!(
            s.find(f.name.as_bytes()).unwrap(),
            Some(f),
            "find disagrees"
        );
        let old = files.insert(f.name.as_bytes().to_vec(), (f.version, data));
        assert!(old.is_none(), "{:?} listed twice", f.name);
    }
    let mut buf = [0u8; 600];
    let info = s.config(&mut buf).unwrap();
    View {
        files,
        payload: buf[..info.len].to_vec(),
    }
}

pub fn view_of(files: &[(&[u8], u32, &[u8])], payload: &[u8]) -> View {
    View {
        files: files
            .iter()
            .map(|(n, v, d)| (n.to_vec(), (*v, d.to_vec())))
            .collect(),
        payload: payload.to_vec(),
    }
}

/// Number of intact extent headers whose sectors are not all erased (a leak detector): counts sectors
/// that are not entirely 0xFF beyond the config sectors.
pub fn used_sectors(flash: &[u8]) -> usize {
    flash
        .chunks(SECTOR)
        .skip(2)
        .filter(|s| s.iter().any(|&b| b != 0xFF))
        .count()
}

/// Sectors (after the config copies) that start with the extent header magic.
pub fn headers(flash: &[u8]) -> usize {
    flash
        .chunks(SECTOR)
        .skip(2)
        .filter(|s| s.starts_with(b"RFX1"))
        .count()
}

/// The ways a power cut can leave the interrupted operation, each tried at every cut point: half of
/// it done (the first mode), then torn writes (a prefix of the words, then one word with only some of
/// its bit transitions: the first word, one in the middle, the last) and torn erases, chosen for
/// where the extent header's fields are (magic 0..4, fixed part to 96, `verified` 96..100, `dead`
/// 100..104, progress words from 104): an erase from the top that stopped with the header and
/// `verified` intact but `dead` erased, one that left the fixed part only, one that left the state
/// words too, one from the bottom that erased just the fixed part, and noise.
pub const CUTS: [Cut; 6] = [
    Cut::HALF,
    Cut {
        write: TornWrite::Bits {
            word: 0,
            bits: 0x0000_00FF,
        },
        erase: TornErase::Downward { left: 100 },
    },
    Cut {
        write: TornWrite::Bits {
            word: usize::MAX,
            bits: 0xFFFF_0000,
        },
        erase: TornErase::Downward { left: 96 },
    },
    Cut {
        write: TornWrite::Bits {
            word: 1,
            bits: 0x0101_0101,
        },
        erase: TornErase::Downward { left: 104 },
    },
    Cut {
        write: TornWrite::Bits {
            word: 2,
            bits: 0x7FFF_FFFF,
        },
        erase: TornErase::Upward { left: 4000 },
    },
    Cut {
        write: TornWrite::Bits {
            word: usize::MAX,
            bits: 0x0000_0001,
        },
        erase: TornErase::Random { seed: 0x5EED },
    },
];

/// A flash holding `image` that loses power at operation `op` as `cut` says.
pub fn cut_flash(image: &[u8], op: u32, cut: Cut) -> Mem {
    let mut f = MemFlash::new(image.to_vec());
    f.cut_power_with(op, cut);
    f
}

/// What a reboot does after a power cut: power back, a fresh `Store` (no RAM state).
pub fn reboot(s: Store<Mem>) -> Store<Mem> {
    let mut f = s.into_inner();
    f.power_on();
    Store::new(f)
}

/// Every staged entry, as `next_staged` lists them.
pub fn staged_all<F: embedded_storage::nor_flash::NorFlash>(
    s: &mut Store<F>,
) -> Vec<rota_store::Staged> {
    let mut c = Cursor::default();
    let mut v = vec![];
    while let Some(e) = s.next_staged(&mut c).unwrap() {
        v.push(e);
    }
    v
}
