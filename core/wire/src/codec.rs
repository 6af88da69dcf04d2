//! Hand-written postcard for the device's side: encoding [`DeviceMsg`], decoding [`ServerMsg`] and
//! checking a [`crate::DeviceConfig`] record.
//!
//! The wire format IS postcard (the server encodes and decodes with serde); these few loops replace
//! serde's generated visitors on the device, where they cost several kilobytes of code. The tests check
//! both implementations against each other, byte for byte.

use crate::msg::{
    Begin, Bytes, Commit, Data, DeviceMsg, FileInfo, Hello, Name, Release, Rename, ServerMsg,
    Upload, Welcome,
};
use crate::{Error, MAX_CHUNK, MAX_NAME};

/// Reads postcard values off a payload; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.buf.len() {
            return Err(Error::Malformed);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn byte(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    /// A postcard varint of at most `max_bytes` bytes whose last byte is at most `last_max`. Like
    /// postcard, it takes overlong encodings (`0x80 0x00` is 0) up to `max_bytes`; a value over
    /// `u32::MAX` (only a 64-bit host's `usize` can hold one) is refused, as every limit it is
    /// checked against is far below it. Accumulates in a `u32`: 64-bit arithmetic costs the
    /// overlays code on the 32-bit devices.
    #[inline(never)]
    fn varint(&mut self, max_bytes: u32, last_max: u8) -> Result<u32, Error> {
        let mut out = 0u32;
        for i in 0..max_bytes {
            let b = self.byte()?;
            let bits = u32::from(b & 0x7f);
            let shift = 7 * i;
            let fits = match shift {
                0 => true,
                1..=31 => bits >> (32 - shift) == 0,
                _ => bits == 0,
            };
            if !fits {
                return Err(Error::Malformed);
            }
            if shift < 32 {
                out |= bits << shift;
            }
            if b & 0x80 == 0 {
                if i == max_bytes - 1 && b > last_max {
                    return Err(Error::Malformed);
                }
                return Ok(out);
            }
        }
        Err(Error::Malformed)
    }

    pub fn u32(&mut self) -> Result<u32, Error> {
        self.varint(5, 0x0f)
    }

    pub fn u16(&mut self) -> Result<u16, Error> {
        Ok(self.varint(3, 0x03)? as u16)
    }

    /// A length or count (postcard's `usize`: as many varint bytes as this platform's `usize` has,
    /// 5 on the device, 10 on a 64-bit host, so both ends agree with serde's decoder where they run).
    pub fn length(&mut self) -> Result<usize, Error> {
        const BYTES: u32 = usize::BITS.div_ceil(7);
        const LAST: u8 = ((1u32 << (usize::BITS - 7 * (BYTES - 1))) - 1) as u8;
        Ok(self.varint(BYTES, LAST)? as usize)
    }

    /// An enum's variant index (postcard: a `u32` varint).
    pub fn variant(&mut self) -> Result<u32, Error> {
        self.u32()
    }

    /// A 0/1 byte (bool, option tag).
    pub fn flag(&mut self) -> Result<bool, Error> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::Malformed),
        }
    }

    /// A length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8], Error> {
        let n = self.length()?;
        if n > max {
            return Err(Error::Malformed);
        }
        self.take(n)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, max: usize) -> Result<&'a [u8], Error> {
        let s = self.bytes(max)?;
        core::str::from_utf8(s).map_err(|_| Error::Malformed)?;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn name(&mut self) -> Result<Name<'a>, Error> {
        Name::new(self.bytes(MAX_NAME)?).ok_or(Error::Malformed)
    }

    /// Succeeds only when everything was read.
    pub fn end(&self) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed)
        }
    }
}

/// Writes postcard values into a buffer.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    pub fn raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self.pos + bytes.len();
        self.buf
            .get_mut(self.pos..end)
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    pub fn u32(&mut self, mut v: u32) -> Result<(), Error> {
        let mut tmp = [0u8; 5];
        let mut n = 0;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                tmp[n] = b;
                n += 1;
                break;
            }
            tmp[n] = b | 0x80;
            n += 1;
        }
        self.raw(&tmp[..n])
    }

    pub fn bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.u32(bytes.len() as u32)?;
        self.raw(bytes)
    }

    pub fn len(&self) -> usize {
        self.pos
    }
}

/// The postcard encoding of a Hello.
pub(crate) fn encode_hello(h: &Hello<'_>, out: &mut [u8]) -> Result<usize, Error> {
    let mut w = Writer::new(out);
    w.u32(h.device_id)?;
    w.u32(h.nonce)?;
    w.raw(&[h.isa, h.abi, h.flags])?;
    w.raw(&h.config.0.to_le_bytes())?;
    w.raw(&h.state)?;
    w.u32(h.security_version)?;
    w.u32(h.staged.len() as u32)?;
    for s in &h.staged {
        w.bytes(s.name.as_bytes())?;
        w.u32(s.size)?;
        w.raw(&s.digest)?;
        w.u32(s.done)?;
    }
    match &h.rollback {
        None => w.raw(&[0])?,
        Some(r) => {
            w.raw(&[1])?;
            w.u32(r.from)?;
            w.u32(r.to)?;
            w.raw(&[r.reason, r.phase])?;
        }
    }
    w.u32(h.heap.phases.len() as u32)?;
    for p in &h.heap.phases {
        w.u32(p.heap)?;
        w.u32(p.stack)?;
    }
    w.u32(h.heap.residue)?;
    Ok(w.len())
}

/// The postcard encoding of one committed file's entry (of a [`crate::msg::Files`]).
pub(crate) fn encode_file(w: &mut Writer<'_>, f: &FileInfo<'_>) -> Result<(), Error> {
    w.bytes(f.name.as_bytes())?;
    w.u32(f.size)?;
    w.u32(f.version)?;
    w.raw(&f.digest)
}

/// The postcard encoding of a device message (what serde would write).
pub(crate) fn encode_device(msg: &DeviceMsg<'_>, out: &mut [u8]) -> Result<usize, Error> {
    if let DeviceMsg::Hello(h) = msg {
        return encode_hello(h, out);
    }
    let mut w = Writer::new(out);
    match msg {
        DeviceMsg::Hello(_) => {}
        DeviceMsg::Ready(r) => w.u32(r.offset)?,
        DeviceMsg::Ack(a) => w.u32(a.offset)?,
        DeviceMsg::Staged => {}
        // An enum of unit variants is its index as a varint: one byte here.
        DeviceMsg::Failed(f) => w.raw(&[f.reason as u8, f.detail])?,
        DeviceMsg::FileData(d) => {
            w.u32(d.offset)?;
            w.bytes(d.bytes.0)?;
        }
        DeviceMsg::Committed(c) => w.u32(c.generation)?,
        DeviceMsg::Files(f) => {
            w.u32(f.files.len() as u32)?;
            for file in &f.files {
                encode_file(&mut w, file)?;
            }
        }
    }
    Ok(w.len())
}

/// Decodes a server message's payload (what serde would read, with the same bounds).
pub(crate) fn decode_server(kind: u8, payload: &[u8]) -> Result<ServerMsg<'_>, Error> {
    use crate::msg::kind as k;
    let mut r = Reader::new(payload);
    let msg = match kind {
        k::WELCOME => ServerMsg::Welcome(Welcome {
            server_nonce: r.array()?,
        }),
        k::NO_UPDATE => ServerMsg::NoUpdate,
        k::BEGIN => ServerMsg::Begin(Begin {
            name: r.name()?,
            size: r.u32()?,
            digest: r.array()?,
            version: r.u32()?,
        }),
        k::DATA => ServerMsg::Data(Data {
            offset: r.u32()?,
            bytes: Bytes(r.bytes(MAX_CHUNK)?),
        }),
        k::FINISH => ServerMsg::Finish(r.name()?),
        k::DROP => ServerMsg::Drop(r.name()?),
        k::DELETE => ServerMsg::Delete(r.name()?),
        k::RENAME => ServerMsg::Rename(Rename {
            from: r.name()?,
            to: r.name()?,
        }),
        k::UPLOAD => ServerMsg::Upload(Upload {
            name: r.name()?,
            offset: r.u32()?,
            len: r.u32()?,
        }),
        k::LIST => ServerMsg::List,
        k::RELEASE => ServerMsg::Release(Release {
            manifest: Bytes(r.bytes(MAX_CHUNK)?),
            signature: r.array()?,
        }),
        k::COMMIT => ServerMsg::Commit(Commit {
            config: if r.flag()? {
                Some(Bytes(r.bytes(crate::config::MAX_CONFIG)?))
            } else {
                None
            },
        }),
        other => return Err(Error::UnknownKind(other)),
    };
    r.end()?;
    Ok(msg)
}
