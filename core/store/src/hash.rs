//! SHA-256 of a range of flash.

use embedded_storage::nor_flash::NorFlash;
use sha2::compress256;

use crate::{Error, Store};

/// SHA-256 initial hash value (FIPS 180-4, 5.3.3).
const SHA256_INIT: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

impl<F: NorFlash> Store<F> {
    /// SHA-256 of `len` bytes of flash from `off`, a block at a time straight into the compression
    /// function, padding the last block here.
    ///
    /// Not `sha2::Sha256` (`update`, `finalize`), on purpose: that hasher keeps its own 64-byte block
    /// buffer and length beside the one flash is read into, and its finalisation works on further
    /// copies. Measured on thumbv7m at opt-level 3 (`-Z emit-stack-sizes`), this function's frame is
    /// 216 bytes as written and 408 bytes with the hasher (the caller chain from `stage_finish` is
    /// the same otherwise); the store keeps every call under 1 KB of stack, so the padding (FIPS
    /// 180-4, 5.1.1) stays these few lines.
    #[inline(never)]
    pub(crate) fn hash(&mut self, off: u32, len: u32) -> Result<[u8; 32], Error> {
        let mut state = SHA256_INIT;
        let mut block = [0u8; 64];
        let mut at = 0;
        loop {
            let n = (len - at).min(64) as usize;
            self.rd(off + at, &mut block[..n])?;
            at += n as u32;
            if n < 64 {
                // Padding: 0x80, zeros, bit length (big-endian) in the last 8 bytes of a block.
                block[n] = 0x80;
                block[n + 1..].fill(0);
                if n >= 56 {
                    compress256(&mut state, &[block.into()]);
                    block.fill(0);
                }
                block[56..].copy_from_slice(&(u64::from(len) * 8).to_be_bytes());
                compress256(&mut state, &[block.into()]);
                break;
            }
            compress256(&mut state, &[block.into()]);
        }
        let mut out = [0u8; 32];
        for (o, w) in out.as_chunks_mut::<4>().0.iter_mut().zip(state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        Ok(out)
    }
}
