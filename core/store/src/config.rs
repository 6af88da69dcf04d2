//! The double config record in sectors 0 and 1: loading and choosing the current copy, writing a successor into the other copy, and the public calls built on them.

use embedded_storage::nor_flash::NorFlash;

use crate::layout::{crc32, le32, put32, CONFIG_HEADER, CONFIG_MAGIC, CONFIG_SECTORS, SECTOR};
use crate::{ConfigInfo, Error, Store, BUF, CONFIG_MAX};

/// The current config record copy.
#[derive(Clone, Copy)]
pub(crate) struct Cfg {
    pub(crate) slot: u32,
    pub(crate) seq: u32,
    pub(crate) generation: u32,
    pub(crate) boot_count: u32,
    pub(crate) len: u32,
}

/// Where a config record's payload comes from.
pub(crate) enum Payload<'a> {
    Bytes(&'a [u8]),
    /// Copied from the other slot's current record.
    Keep(Cfg),
}

impl<F: NorFlash> Store<F> {
    /// The record in `slot` if it is intact.
    #[inline(never)]
    pub(crate) fn load_slot(&mut self, slot: u32) -> Result<Option<Cfg>, Error> {
        let base = slot * SECTOR;
        let mut h = [0u8; CONFIG_HEADER as usize];
        self.rd(base, &mut h)?;
        let len = u32::from(u16::from_le_bytes([h[16], h[17]]));
        if h[..4] != CONFIG_MAGIC || len as usize > CONFIG_MAX || h[18..20] != [0, 0] {
            return Ok(None);
        }
        let mut crc = crc32(!0, &h);
        let mut b = [0u8; BUF];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(BUF as u32) as usize;
            self.rd(base + CONFIG_HEADER + at, &mut b[..n])?;
            crc = crc32(crc, &b[..n]);
            at += n as u32;
        }
        let mut c = [0u8; 4];
        self.rd(base + (CONFIG_HEADER + len).next_multiple_of(4), &mut c)?;
        if u32::from_le_bytes(c) != !crc {
            return Ok(None);
        }
        Ok(Some(Cfg {
            slot,
            seq: le32(&h, 4),
            generation: le32(&h, 8),
            boot_count: le32(&h, 12),
            len,
        }))
    }

    /// The current record: the intact copy with the higher sequence number (serial arithmetic).
    pub(crate) fn current(&mut self) -> Result<Cfg, Error> {
        if self.total() <= CONFIG_SECTORS {
            return Err(Error::NoConfig);
        }
        match (self.load_slot(0)?, self.load_slot(1)?) {
            (Some(a), Some(b)) if (b.seq.wrapping_sub(a.seq) as i32) > 0 => Ok(b),
            (Some(a), _) => Ok(a),
            (None, Some(b)) => Ok(b),
            (None, None) => Err(Error::NoConfig),
        }
    }

    pub(crate) fn generation(&mut self) -> Result<u32, Error> {
        Ok(self.current()?.generation)
    }

    /// Writes a whole record into `slot` (erase, header, payload, checksum last), then checks it.
    pub(crate) fn write_record(
        &mut self,
        slot: u32,
        seq: u32,
        generation: u32,
        boot_count: u32,
        payload: Payload<'_>,
    ) -> Result<(), Error> {
        let len = match payload {
            Payload::Bytes(p) if p.len() > CONFIG_MAX => return Err(Error::PayloadTooLong),
            Payload::Bytes(p) => p.len() as u32,
            Payload::Keep(c) => c.len,
        };
        let base = slot * SECTOR;
        let mut h = [0u8; CONFIG_HEADER as usize];
        h[..4].copy_from_slice(&CONFIG_MAGIC);
        put32(&mut h, 4, seq);
        put32(&mut h, 8, generation);
        put32(&mut h, 12, boot_count);
        h[16..18].copy_from_slice(&(len as u16).to_le_bytes());
        self.erase_back(slot, slot + 1)?;
        self.program(base, &h)?;
        let mut crc = crc32(!0, &h);
        match payload {
            Payload::Bytes(p) => {
                self.program(base + CONFIG_HEADER, p)?;
                crc = crc32(crc, p);
            }
            Payload::Keep(c) => {
                let mut b = [0u8; BUF];
                let mut at = 0;
                while at < len {
                    let n = (len - at).min(BUF as u32) as usize;
                    self.rd(c.slot * SECTOR + CONFIG_HEADER + at, &mut b[..n])?;
                    self.program(base + CONFIG_HEADER + at, &b[..n])?;
                    crc = crc32(crc, &b[..n]);
                    at += n as u32;
                }
            }
        }
        self.program(
            base + (CONFIG_HEADER + len).next_multiple_of(4),
            &(!crc).to_le_bytes(),
        )?;
        match self.load_slot(slot)? {
            Some(c) if c.seq == seq => Ok(()),
            _ => Err(self.mismatch(base)),
        }
    }

    /// Writes a successor of the current record `c` into the other slot.
    pub(crate) fn next_record(
        &mut self,
        c: Cfg,
        generation: u32,
        boot_count: u32,
        payload: Option<&[u8]>,
    ) -> Result<(), Error> {
        let p = payload.map_or(Payload::Keep(c), Payload::Bytes);
        self.write_record(1 - c.slot, c.seq.wrapping_add(1), generation, boot_count, p)
    }

    /// Erases the whole region and writes a config record with generation 0, sequence 1, boot
    /// count 0 and `payload`. Every file is gone.
    pub fn format(&mut self, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > CONFIG_MAX {
            return Err(Error::PayloadTooLong);
        }
        let total = self.total();
        if total <= CONFIG_SECTORS {
            return Err(Error::NoSpace);
        }
        self.staging = None;
        self.erase_back(1, total)?;
        self.write_record(0, 1, 0, 0, Payload::Bytes(payload))
    }

    /// Copies the current config payload into `buf` (as much as fits) and describes the record.
    /// [`Error::NoConfig`] if neither copy is intact.
    pub fn config(&mut self, buf: &mut [u8]) -> Result<ConfigInfo, Error> {
        let c = self.current()?;
        let n = buf.len().min(c.len as usize);
        self.rd(c.slot * SECTOR + CONFIG_HEADER, &mut buf[..n])?;
        Ok(ConfigInfo {
            seq: c.seq,
            generation: c.generation,
            boot_count: c.boot_count,
            len: c.len as usize,
        })
    }

    /// Persists boot count + 1 (same generation and payload) and returns it once it is on flash.
    pub fn bump_boot(&mut self) -> Result<u32, Error> {
        let c = self.current()?;
        let boot = c.boot_count.wrapping_add(1);
        self.next_record(c, c.generation, boot, None)?;
        Ok(boot)
    }

    /// Replaces the config payload, keeping the generation and boot count.
    pub fn write_config(&mut self, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > CONFIG_MAX {
            return Err(Error::PayloadTooLong);
        }
        let c = self.current()?;
        self.next_record(c, c.generation, c.boot_count, Some(payload))
    }
}
