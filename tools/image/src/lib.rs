//! Builds the storage region a rota device boots from: a formatted file store (docs/flash-layout.md)
//! whose config record holds the device config, and the given files committed as its first generation.
//!
//! For a board that relocates blobs to run them in place from its storage region ([`InPlace`]), a blob
//! the core would run there relocated (one with relocations whose image is larger than the arena: the
//! LX106's `provision`) is stored relocated for its address exactly as the resident core stages it at
//! install time: `rota_blob::relocate_stored` for `rota_loader::in_place_base` of the file's data offset
//! (docs/overlay-format.md, "Running in place relocated"). Its digests stay those of the blob as built.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use rota_memflash::MemFlash;
use rota_store::{CommitParams, Cursor, Store};
use rota_wire::DeviceConfig;

/// Storage region size used by both boards.
pub const REGION_SIZE: usize = 512 * 1024;

/// One file to place in the store.
pub struct FileSpec {
    /// Name in the store (`init`, `tick`, `provision`, `app`, or a data file).
    pub name: String,
    /// Content.
    pub data: Vec<u8>,
    /// Version number recorded with it.
    pub version: u32,
}

/// How the board the image is for runs a blob with relocations that is too large for its arena: in
/// place, from the storage region mapped for execution (the board's `xip_base`), relocated for its
/// address there as the core installs it (a board with `Board::RELOCATE_IN_PLACE`: the LX106).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InPlace {
    /// The address of storage offset 0 in the board's execution mapping (`Board::xip_base`).
    pub mapped_base: u32,
    /// The board's overlay arena in bytes: a blob whose image fits runs there, not in place.
    pub arena: u32,
}

/// The base `data` (file `name`, to be stored at region offset `offset`) must be relocated for, if the
/// core on a board with `in_place` would run it in place relocated: a blob name the core loads, a blob
/// header with relocations, an image larger than the arena and a total size equal to the file's (the
/// conditions under which the core's store services relocate a staged file).
fn relocation_base(in_place: InPlace, name: &str, data: &[u8], offset: u32) -> Option<u32> {
    if !rota_limits::BLOBS.contains(&name) {
        return None;
    }
    let header = rota_blob::Blob::parse(data).ok()?.header;
    let fits = header.reloc_count == 0
        || header.image_size <= in_place.arena
        || header.total_size() as usize != data.len();
    if fits {
        return None;
    }
    rota_loader::in_place_base(in_place.mapped_base, offset, &header)
}

/// A region image of `size` bytes holding `config` and `files`, every file stored as given.
pub fn build(size: usize, config: &DeviceConfig, files: &[FileSpec]) -> Result<Vec<u8>, String> {
    build_for(size, config, files, None)
}

/// A region image of `size` bytes holding `config` and `files`, for a board that runs blobs in place
/// as `in_place` says (`None`: never; every file is stored as given).
pub fn build_for(
    size: usize,
    config: &DeviceConfig,
    files: &[FileSpec],
    in_place: Option<InPlace>,
) -> Result<Vec<u8>, String> {
    let mut cfg = vec![0u8; rota_abi::CONFIG_MAX];
    let n = config
        .encode(&mut cfg)
        .map_err(|e| format!("device config does not fit: {e:?}"))?;
    let mut payload = [0u8; rota_core::record::PAYLOAD_MAX];
    let len = rota_core::record::join(&cfg[..n], &[], &mut payload)
        .ok_or("device config does not fit the record")?;
    let mut store = Store::new(MemFlash::new(vec![0xFFu8; size]));
    let fail = |what: &str, e: rota_store::Error| format!("{what}: {}", e.describe());
    store
        .format(&payload[..len])
        .map_err(|e| fail("format", e))?;
    for f in files {
        let name = f.name.as_bytes();
        let digest = rota_wire::sha256(&f.data);
        store
            .stage_begin(name, f.data.len() as u32, &digest, f.version)
            .map_err(|e| fail(&f.name, e))?;
        let offset = staged_offset(&mut store, name).map_err(|e| fail(&f.name, e))?;
        match in_place.and_then(|p| relocation_base(p, &f.name, &f.data, offset)) {
            Some(base) => {
                let mut relocated = f.data.clone();
                rota_blob::relocate_stored(&mut relocated, base)
                    .map_err(|e| format!("{}: {e:?}", f.name))?;
                store
                    .stage_write(name, 0, &relocated)
                    .map_err(|e| fail(&f.name, e))?;
                // The digest is the blob's as built (what the core hashes: the bytes it received).
                store
                    .stage_finish_hashed(name, &digest)
                    .map_err(|e| fail(&f.name, e))?;
            }
            None => {
                store
                    .stage_write(name, 0, &f.data)
                    .map_err(|e| fail(&f.name, e))?;
                store.stage_finish(name).map_err(|e| fail(&f.name, e))?;
            }
        }
    }
    store
        .commit(None, &CommitParams::IMMEDIATE)
        .map_err(|e| fail("commit", e))?;
    Ok(store.into_inner().contents().to_vec())
}

/// The region offset of staged file `name`'s first byte.
fn staged_offset<F: embedded_storage::nor_flash::NorFlash>(
    store: &mut Store<F>,
    name: &[u8],
) -> Result<u32, rota_store::Error> {
    let mut cursor = Cursor::default();
    while let Some(s) = store.next_staged(&mut cursor)? {
        if !s.tombstone && s.name.as_bytes() == name {
            return Ok(s.data_offset);
        }
    }
    Err(rota_store::Error::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DeviceConfig {
        DeviceConfig {
            device_id: 7,
            secret: heapless::Vec::from_slice(b"s").unwrap(),
            server: [10, 0, 2, 100],
            port: 8266,
            leave: false,
            app: heapless::String::new(),
            entry: heapless::String::new(),
            ip: None,
            gateway: [0; 4],
            netmask: [0; 4],
            dns: [0; 4],
            protocol: 2,
            link: rota_wire::Link::Tcp,
            trials: rota_wire::config::DEFAULT_TRIALS,
            keys: heapless::Vec::new(),
            chk: heapless::String::new(),
            files: heapless::Vec::new(),
        }
    }

    #[test]
    fn the_image_holds_the_config_and_every_file_committed() {
        let files = [
            FileSpec {
                name: "app".into(),
                data: vec![1; 5000],
                version: 3,
            },
            FileSpec {
                name: "data.txt".into(),
                data: b"hello".to_vec(),
                version: 1,
            },
        ];
        let image = build(64 * 1024, &config(), &files).unwrap();
        let mut store = Store::new(MemFlash::new(image));
        let mut payload = [0u8; rota_core::record::PAYLOAD_MAX];
        let info = store.config(&mut payload).unwrap();
        let (cfg, report) = rota_core::record::split(&payload[..info.len]).unwrap();
        assert_eq!(DeviceConfig::decode(cfg).unwrap(), config());
        assert!(report.is_empty());
        for f in &files {
            let found = store.find(f.name.as_bytes()).unwrap().expect("committed");
            assert_eq!(
                (found.size, found.version),
                (f.data.len() as u32, f.version)
            );
            let mut back = vec![0; f.data.len()];
            store.read(&found, 0, &mut back).unwrap();
            assert_eq!(back, f.data);
        }
    }

    /// A blob for the LX106 with an image of `image_size` bytes and relocations at 0, 4 and 2000
    /// (when inside the image).
    fn blob(image_size: usize) -> Vec<u8> {
        let image: Vec<u8> = (0..image_size).map(|i| (i * 7) as u8).collect();
        let relocs: Vec<u32> = [0, 4, 2000]
            .into_iter()
            .filter(|&r| (r as usize) < image_size)
            .collect();
        rota_blob::emit_blob(
            rota_blob::Isa::Lx106,
            rota_abi::ABI_VERSION,
            "t",
            &image,
            0,
            &relocs,
        )
        .unwrap()
    }

    const ESP: InPlace = InPlace {
        mapped_base: 0x4028_0000,
        arena: 8192,
    };

    /// The bytes stored for `name` in `image`, and the file.
    fn stored(image: &[u8], name: &str) -> (Vec<u8>, rota_store::File) {
        let mut store = Store::new(MemFlash::new(image.to_vec()));
        let f = store.find(name.as_bytes()).unwrap().expect("committed");
        let mut back = vec![0; f.size as usize];
        store.read(&f, 0, &mut back).unwrap();
        (back, f)
    }

    fn verify_in_place(
        image: &[u8],
        file: &rota_store::File,
    ) -> Result<u32, rota_loader::LoadError> {
        let target = rota_loader::Target {
            isa: rota_blob::Isa::Lx106,
            abi_version: rota_abi::ABI_VERSION,
        };
        let mut flash = MemFlash::new(image.to_vec());
        rota_loader::verify_relocated_in_place(
            &mut flash,
            file.data_offset,
            target,
            ESP.mapped_base,
            &file.digest,
        )
        .map(|l| l.base)
    }

    #[test]
    fn a_blob_the_core_runs_in_place_relocated_is_stored_relocated_for_its_address() {
        let provision = blob(12_000);
        let files = [FileSpec {
            name: "provision".into(),
            data: provision.clone(),
            version: 1,
        }];
        let image = build_for(128 * 1024, &config(), &files, Some(ESP)).unwrap();
        let (back, f) = stored(&image, "provision");
        // The digests stay those of the blob as built.
        assert_eq!(f.digest, rota_wire::sha256(&provision));
        // Exactly the three relocated words differ, each by the address the image runs at.
        let header = rota_blob::Blob::parse(&provision).unwrap().header;
        let base = rota_loader::in_place_base(ESP.mapped_base, f.data_offset, &header).unwrap();
        let at = header.image_offset() as usize;
        let word =
            |b: &[u8], o: usize| u32::from_le_bytes(b[at + o..at + o + 4].try_into().unwrap());
        for r in [0, 4, 2000] {
            assert_eq!(word(&back, r), word(&provision, r).wrapping_add(base));
        }
        let differing = (0..back.len()).filter(|&i| back[i] != provision[i]).count();
        assert!((1..=12).contains(&differing), "{differing} bytes differ");
        // The core's loader accepts it where it is, for that address.
        assert_eq!(verify_in_place(&image, &f), Ok(base));
        // Stored as built, the core would refuse it.
        let plain = build(128 * 1024, &config(), &files).unwrap();
        let (back, f) = stored(&plain, "provision");
        assert_eq!(back, provision);
        assert!(verify_in_place(&plain, &f).is_err());
    }

    #[test]
    fn blobs_that_fit_the_arena_and_other_files_are_stored_as_given() {
        let small = blob(4000);
        let big = blob(12_000);
        let files = [
            FileSpec {
                name: "tick".into(),
                data: small.clone(),
                version: 1,
            },
            FileSpec {
                // Not a name the core loads as a blob: never relocated.
                name: "data.bin".into(),
                data: big.clone(),
                version: 1,
            },
        ];
        let image = build_for(128 * 1024, &config(), &files, Some(ESP)).unwrap();
        assert_eq!(stored(&image, "tick").0, small);
        assert_eq!(stored(&image, "data.bin").0, big);
        // An arena larger than the image: stored as given too.
        let roomy = InPlace {
            arena: 16 * 1024,
            ..ESP
        };
        let files = [FileSpec {
            name: "provision".into(),
            data: big.clone(),
            version: 1,
        }];
        let image = build_for(128 * 1024, &config(), &files, Some(roomy)).unwrap();
        assert_eq!(stored(&image, "provision").0, big);
    }

    #[test]
    fn files_that_do_not_fit_are_refused() {
        let big = FileSpec {
            name: "app".into(),
            data: vec![0; 70 * 1024],
            version: 1,
        };
        assert!(build(64 * 1024, &config(), &[big]).is_err());
    }
}
