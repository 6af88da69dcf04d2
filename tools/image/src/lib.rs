//! Builds the storage region a rota device boots from: a formatted file store (docs/flash-layout.md)
//! whose config record holds the device config, and the given files committed as its first generation.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use rota_memflash::MemFlash;
use rota_store::Store;
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

/// A region image of `size` bytes holding `config` and `files`.
pub fn build(size: usize, config: &DeviceConfig, files: &[FileSpec]) -> Result<Vec<u8>, String> {
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
        store
            .stage_write(name, 0, &f.data)
            .map_err(|e| fail(&f.name, e))?;
        store.stage_finish(name).map_err(|e| fail(&f.name, e))?;
    }
    store.commit(None).map_err(|e| fail("commit", e))?;
    Ok(store.into_inner().contents().to_vec())
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
