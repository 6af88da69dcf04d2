//! `rota-sign`: Ed25519 key pairs and signed releases (`docs/signing.md`).
//!
//! - [`keygen`]: `<path>.key` (the secret seed, hex, mode 0600) and `<path>.pub` (the public key,
//!   hex), from the operating system's randomness; never overwrites either.
//! - [`release`]: one device's release from a repository: its inventory's files read exactly as the
//!   server serves them (`rota-server`'s repository reader: `--SAFETRIM`, links refused), every blob
//!   checked with the device's own verifier for the ISA and the current ABI, the manifest built and
//!   signed, and `<inventory>.release` (`manifest || signature`) written atomically beside the
//!   inventory.
//! - [`show`]: a release file's manifest, and whether it verifies under given public keys.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rota_blob::Isa;
use rota_release::{
    blob_names, check_release, split_release, ManifestBuilder, ManifestError, SignatureError,
    MAX_ENTRIES, PUBLIC_KEY_SIZE, SEED_SIZE,
};
use rota_server::repo::{Inventory, Repo, RepoError};

/// Why a command failed; each names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key file that would be overwritten.
    #[error("{0} already exists: rota-sign never overwrites a key")]
    Exists(PathBuf),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No randomness from the operating system.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// A key file that does not hold a key.
    #[error("{path}: not a key file ({what})")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: &'static str,
    },
    /// The repository cannot serve the device (missing file, bad inventory, link, ...).
    #[error("{0}")]
    Repo(#[from] RepoError),
    /// `--device` is neither a number nor `default`.
    #[error("--device {0}: a device id (decimal) or `default`")]
    BadDevice(String),
    /// The inventory's `config` is one the server would refuse.
    #[error("{file}: {error}")]
    Config {
        /// The inventory.
        file: String,
        /// What is wrong.
        error: String,
    },
    /// More files than a release holds.
    #[error("{file} names {count} files; a release holds at most {MAX_ENTRIES}")]
    TooManyFiles {
        /// The inventory.
        file: String,
        /// How many it names.
        count: usize,
    },
    /// A blob the device would refuse.
    #[error("refusing to sign: {file}: {reason} (checked as a {isa} blob for ABI {abi})")]
    Blob {
        /// The file.
        file: String,
        /// The device loader's reason.
        reason: rota_blob::Error,
        /// The ISA checked for.
        isa: &'static str,
        /// The ABI checked for.
        abi: u32,
    },
    /// The manifest cannot be built (a name over 31 bytes, a file over 4 GiB).
    #[error("{file}: {what}")]
    Manifest {
        /// The file concerned.
        file: String,
        /// Why.
        what: String,
    },
    /// A release file that does not parse.
    #[error("{path}: not a release ({error})")]
    BadRelease {
        /// The file.
        path: PathBuf,
        /// Why.
        error: ManifestError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `N` bytes from a file of hex digits (surrounding white space allowed).
fn read_hex<const N: usize>(path: &Path) -> Result<[u8; N], Error> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    let text = text.trim();
    let bad = |what| Error::BadKeyFile {
        path: path.to_owned(),
        what,
    };
    if text.len() != 2 * N {
        return Err(bad(if N == SEED_SIZE {
            "not 64 hex digits"
        } else {
            "wrong length"
        }));
    }
    rota_release::from_hex(text).ok_or(bad("not hex"))
}

/// Reads a secret key file (`<path>.key`: the 32-byte seed in hex).
pub fn read_seed(path: &Path) -> Result<[u8; SEED_SIZE], Error> {
    read_hex(path)
}

/// Reads a public key file (`<path>.pub`: 32 bytes in hex).
pub fn read_public(path: &Path) -> Result<[u8; PUBLIC_KEY_SIZE], Error> {
    read_hex(path)
}

/// `<out>.key` and `<out>.pub` (`.key`/`.pub` appended to the whole path).
pub fn key_paths(out: &Path) -> (PathBuf, PathBuf) {
    let with = |ext: &str| {
        let mut p = out.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    (with(".key"), with(".pub"))
}

/// Writes a new key pair: `<out>.key` (mode 0600) and `<out>.pub`; refuses if either exists.
/// Returns the two paths and the public key.
pub fn keygen(out: &Path) -> Result<(PathBuf, PathBuf, [u8; PUBLIC_KEY_SIZE]), Error> {
    let (key_path, pub_path) = key_paths(out);
    for p in [&key_path, &pub_path] {
        if p.symlink_metadata().is_ok() {
            return Err(Error::Exists(p.clone()));
        }
    }
    let mut seed = [0u8; SEED_SIZE];
    // The all-zero seed is refused by Ed25519 key derivation; a random one is never it.
    let public = loop {
        getrandom::fill(&mut seed).map_err(|e| Error::Random(e.to_string()))?;
        if let Some(public) = rota_release::public_key(&seed) {
            break public;
        }
    };
    let create = |path: &Path, mode: u32, text: String| -> Result<(), Error> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::Exists(path.to_owned()),
                _ => io(path)(e),
            })?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(path))
    };
    create(&key_path, 0o600, format!("{}\n", hex(&seed)))?;
    create(&pub_path, 0o644, format!("{}\n", hex(&public)))?;
    Ok((key_path, pub_path, public))
}

/// The ISA named `thumbv7m` or `lx106` (`rota_blob::Isa::name`).
pub fn parse_isa(name: &str) -> Option<Isa> {
    [Isa::Thumbv7m, Isa::Lx106]
        .into_iter()
        .find(|i| i.name() == name)
}

/// What [`release`] is asked for.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    /// The repository directory.
    pub repo: PathBuf,
    /// A device id, or `default`.
    pub device: String,
    /// The secret key file.
    pub key: PathBuf,
    /// The release's security version.
    pub security_version: u32,
    /// The devices' ISA.
    pub isa: Isa,
    /// The overlays' ABI ([`rota_abi::ABI_VERSION`] from the command line).
    pub abi: u32,
}

/// What [`release`] wrote.
#[derive(Debug, Clone)]
pub struct ReleaseSummary {
    /// The release file written.
    pub path: PathBuf,
    /// The inventory it signs.
    pub inventory: String,
    /// The files, in manifest (name) order.
    pub files: Vec<String>,
    /// Which of them were checked as blobs.
    pub blobs: Vec<String>,
    /// The manifest's set digest.
    pub set_digest: [u8; 32],
    /// The signer's public key.
    pub public: [u8; PUBLIC_KEY_SIZE],
    /// Bytes of the release file.
    pub len: usize,
}

impl std::fmt::Display for ReleaseSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} files ({} blobs checked: {}), signed by {}, set digest {}, {} bytes",
            self.path.display(),
            self.files.len(),
            self.blobs.len(),
            self.blobs.join(" "),
            &hex(&self.public)[..16],
            &hex(&self.set_digest)[..16],
            self.len
        )
    }
}

/// The inventory `--device` names: `default.json` for `default`, else the one the server serves that
/// device (`ESP-<id>.json`, or `default.json` when there is none).
fn inventory(repo: &Repo, dir: &Path, device: &str) -> Result<(Inventory, u32), Error> {
    if device == "default" {
        let path = dir.join("default.json");
        let meta = path.symlink_metadata().map_err(io(&path))?;
        if !meta.is_file() {
            return Err(Error::Repo(RepoError::NotAFile("default.json".into())));
        }
        let bytes = fs::read(&path).map_err(io(&path))?;
        return Ok((Inventory::parse("default.json", &bytes)?, 0));
    }
    let id: u32 = device
        .parse()
        .map_err(|_| Error::BadDevice(device.to_owned()))?;
    Ok(((*repo.inventory(u64::from(id))?).clone(), id))
}

/// The application's file name the inventory's device config gives (`app` without a config), as
/// the server reads that config.
fn app_name(inventory: &Inventory, id: u32) -> Result<String, Error> {
    let Some(config) = &inventory.config else {
        return Ok(rota_limits::APP.to_owned());
    };
    let bad = |error: String| Error::Config {
        file: inventory.file.clone(),
        error,
    };
    let record = rota_server::plan_v2::config_record(config, id, &inventory.secret)
        .map_err(|e| bad(e.to_string()))?;
    let config =
        rota_wire::config::DeviceConfig::decode(&record).map_err(|e| bad(format!("{e:?}")))?;
    Ok(config.app.as_str().to_owned())
}

/// Builds, checks, signs and writes one device's release (see the crate documentation).
pub fn release(req: &ReleaseRequest) -> Result<ReleaseSummary, Error> {
    let seed = read_seed(&req.key)?;
    let public = rota_release::public_key(&seed).ok_or(Error::BadKeyFile {
        path: req.key.clone(),
        what: "the all-zero seed",
    })?;
    let repo = Repo::open_dir(&req.repo)?;
    let (inventory, id) = inventory(&repo, &req.repo, &req.device)?;
    if inventory.files.len() > MAX_ENTRIES {
        return Err(Error::TooManyFiles {
            file: inventory.file.clone(),
            count: inventory.files.len(),
        });
    }
    let plan = repo.plan(&inventory)?;
    let app = app_name(&inventory, id)?;
    let names = blob_names(app.as_bytes());
    check_release(
        plan.files
            .iter()
            .map(|f| (f.name.as_bytes(), f.data.as_slice())),
        &names,
        req.isa,
        req.abi,
    )
    .map_err(|r| Error::Blob {
        file: String::from_utf8_lossy(r.file).into_owned(),
        reason: r.reason,
        isa: req.isa.name(),
        abi: req.abi,
    })?;
    let mut builder = ManifestBuilder::new(req.security_version, req.isa, req.abi);
    for f in &plan.files {
        builder.file(f.name.as_bytes(), &f.data);
    }
    let mut sorted: Vec<&str> = plan.files.iter().map(|f| f.name.as_str()).collect();
    sorted.sort_unstable();
    let manifest = builder.build().map_err(|e| {
        let file = match e {
            ManifestError::NameLength { index, .. } | ManifestError::NotSorted { index } => {
                sorted.get(index).copied().unwrap_or("?").to_owned()
            }
            ManifestError::FileTooLarge { index } => plan
                .files
                .get(index)
                .map_or("?".to_owned(), |f| f.name.clone()),
            _ => inventory.file.clone(),
        };
        Error::Manifest {
            file,
            what: e.to_string(),
        }
    })?;
    let signature = rota_release::sign(&manifest, &seed).ok_or(Error::BadKeyFile {
        path: req.key.clone(),
        what: "the all-zero seed",
    })?;
    // Never write a release the devices would refuse.
    if rota_release::verify(&manifest, &signature, &[public]) != Ok(0) {
        return Err(Error::Manifest {
            file: inventory.file.clone(),
            what: "the new signature does not verify".into(),
        });
    }
    let mut file = manifest.clone();
    file.extend_from_slice(&signature);
    let name = format!(
        "{}.release",
        inventory
            .file
            .strip_suffix(".json")
            .unwrap_or(&inventory.file)
    );
    rota_server::durable::replace(&req.repo, &name, &file).map_err(io(&req.repo.join(&name)))?;
    let parsed = rota_release::Manifest::parse(&manifest).map_err(|error| Error::BadRelease {
        path: req.repo.join(&name),
        error,
    })?;
    Ok(ReleaseSummary {
        path: req.repo.join(&name),
        inventory: inventory.file.clone(),
        files: sorted.iter().map(|s| s.to_string()).collect(),
        blobs: sorted
            .iter()
            .filter(|n| names.contains(&n.as_bytes()))
            .map(|s| s.to_string())
            .collect(),
        set_digest: parsed.set_digest(),
        public,
        len: file.len(),
    })
}

/// What [`show`] found.
#[derive(Debug, Clone)]
pub struct Shown {
    /// The manifest, one line per field and per file.
    pub text: String,
    /// Whether the signature verified under one of the keys (`None`: no keys given).
    pub verified: Option<Result<usize, SignatureError>>,
}

/// Reads a release file and describes it; verifies it under `keys` (public key files) if any.
pub fn show(path: &Path, keys: &[PathBuf]) -> Result<Shown, Error> {
    let bytes = fs::read(path).map_err(io(path))?;
    let (manifest, signature) = split_release(&bytes).map_err(|error| Error::BadRelease {
        path: path.to_owned(),
        error,
    })?;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "release {}: security version {}, isa {}, abi {}, {} files, set digest {}",
        path.display(),
        manifest.security_version(),
        manifest.isa().name(),
        manifest.abi(),
        manifest.len(),
        hex(&manifest.set_digest())
    );
    for e in manifest.entries() {
        let _ = writeln!(
            text,
            "  {:<31} {:>8} B  version {:08x}  sha256 {}",
            String::from_utf8_lossy(e.name),
            e.size,
            e.version,
            hex(e.digest)
        );
    }
    let verified = if keys.is_empty() {
        None
    } else {
        let public: Vec<[u8; PUBLIC_KEY_SIZE]> = keys
            .iter()
            .map(|k| read_public(k))
            .collect::<Result<_, _>>()?;
        let r = rota_release::verify(manifest.as_bytes(), signature, &public);
        match &r {
            Ok(i) => {
                let _ = writeln!(text, "signature: verifies under {}", keys[*i].display());
            }
            Err(e) => {
                let _ = writeln!(text, "signature: does not verify ({e})");
            }
        }
        Some(r)
    };
    Ok(Shown { text, verified })
}
