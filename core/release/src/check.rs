//! Never send what cannot run: every blob of a release checked with the device's own verifier
//! (`rota-blob`) against the ISA and ABI the device runs, before anything is signed or sent.

use rota_blob::{Blob, HeaderRepr, Isa};

/// Why a blob would not run: the device loader's own reason.
pub type BlobRefusal = rota_blob::Error;

/// A release refused: the file and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseRefusal<'a> {
    /// The file's name.
    pub file: &'a [u8],
    /// Why its blob would not run.
    pub reason: BlobRefusal,
}

impl core::fmt::Display for ReleaseRefusal<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let file = core::str::from_utf8(self.file).unwrap_or("<not UTF-8>");
        write!(f, "`{file}`: {}", self.reason)
    }
}

/// The files of a release that are blobs: the overlays (rota-limits' `OVERLAYS`) and the device
/// config's application, `app` (rota-limits' `APP` unless the config names another).
pub fn blob_names(app: &[u8]) -> [&[u8]; 4] {
    let [init, tick, provision] = rota_limits::OVERLAYS;
    [init.as_bytes(), tick.as_bytes(), provision.as_bytes(), app]
}

/// Checks one blob as the device's loader would before it runs it: the header (`Blob::parse`:
/// magic, format, sizes, name, entry), every relocation, the blob's trailing SHA-256, then the ISA
/// and ABI against the device's (`check_compatible`), with no arena limit since a blob larger than
/// the arena runs in place. What it cannot check is the device's own: whether a blob too large for
/// the arena can run in place there (its flash mapping), which the loader still decides.
pub fn check_blob(bytes: &[u8], isa: Isa, abi: u32) -> Result<HeaderRepr, BlobRefusal> {
    let blob = Blob::parse(bytes)?;
    blob.header.check_compatible(isa, abi, u32::MAX)?;
    Ok(blob.header)
}

/// Checks every file of a release whose name is in `blob_names` (see [`blob_names`]) with
/// [`check_blob`]; other files are data and are not looked at. The first refusal names its file.
pub fn check_release<'a>(
    files: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    blob_names: &[&[u8]],
    isa: Isa,
    abi: u32,
) -> Result<(), ReleaseRefusal<'a>> {
    for (name, bytes) in files {
        if blob_names.contains(&name) {
            check_blob(bytes, isa, abi).map_err(|reason| ReleaseRefusal { file: name, reason })?;
        }
    }
    Ok(())
}
