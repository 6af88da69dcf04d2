//! Streaming verification: a blob is checked chunk by chunk as it is read from flash, so the loader never
//! holds more than a small buffer, and nothing is executed until [`Verifier::finish`] succeeds.

use crate::{le32, Error, Header, HeaderRepr, DIGEST_SIZE, HEADER_SIZE};
use sha2::{Digest, Sha256};

/// Adds the load base to a word that was linked for address 0.
#[inline]
pub fn relocate_word(word: u32, base: u32) -> u32 {
    word.wrapping_add(base)
}

/// The inverse of [`relocate_word`]: the word as linked for address 0, from the word relocated for
/// `base`. A loader that checks a blob stored relocated hashes the words this gives back.
#[inline]
pub fn unrelocate_word(word: u32, base: u32) -> u32 {
    word.wrapping_sub(base)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Header,
    Relocs,
    Image,
    Digest,
    Done,
}

/// Checks a blob fed in chunks of any size: header fields, every relocation, and the digest.
#[derive(Clone)]
pub struct Verifier {
    part: Part,
    hasher: Sha256,
    /// Bytes seen so far.
    pos: u32,
    /// Collects the header, one partial relocation word, or the digest.
    buf: [u8; HEADER_SIZE],
    buf_len: usize,
    header: Option<HeaderRepr>,
    relocs_seen: u32,
    last_reloc: Option<u32>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier at the start of a blob.
    pub fn new() -> Self {
        Verifier {
            part: Part::Header,
            hasher: Sha256::new(),
            pos: 0,
            buf: [0; HEADER_SIZE],
            buf_len: 0,
            header: None,
            relocs_seen: 0,
            last_reloc: None,
        }
    }

    /// The parsed header, once [`HEADER_SIZE`] bytes have been fed.
    pub fn header(&self) -> Option<&HeaderRepr> {
        self.header.as_ref()
    }

    /// Bytes still expected before the blob is complete (the header's 48 until it is known).
    pub fn remaining(&self) -> u32 {
        match &self.header {
            Some(h) => h.total_size() - self.pos,
            None => (HEADER_SIZE - self.buf_len) as u32,
        }
    }

    /// Feeds the next chunk; fails on the first malformed field.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let used = match self.part {
                Part::Header => self.feed_header(data)?,
                Part::Relocs => self.feed_relocs(data)?,
                Part::Image => self.feed_image(data),
                Part::Digest => self.feed_digest(data),
                Part::Done => return Err(Error::Sequence),
            };
            data = &data[used..];
        }
        Ok(())
    }

    /// Completes verification: the blob must be whole and its digest must match.
    pub fn finish(self) -> Result<HeaderRepr, Error> {
        let header = self.whole()?;
        let digest: [u8; 32] = self.hasher.finalize().into();
        // Compare without early exit.
        let diff = digest
            .iter()
            .zip(&self.buf[..DIGEST_SIZE])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(Error::DigestMismatch);
        }
        Ok(header)
    }

    /// The SHA-256 of every byte fed, the trailing digest included, once the whole blob has been fed
    /// (`None` before): the digest of the whole blob as a file, which is what a store records and a
    /// server announces for it. It checks nothing; [`Verifier::finish`] does.
    #[inline(never)]
    pub fn file_digest(&self) -> Option<[u8; 32]> {
        self.whole().ok()?;
        let mut h = self.hasher.clone();
        h.update(&self.buf[..DIGEST_SIZE]);
        Some(h.finalize().into())
    }

    /// The header, if the whole blob has been fed.
    fn whole(&self) -> Result<HeaderRepr, Error> {
        match (self.part, self.header) {
            (Part::Done, Some(h)) => Ok(h),
            (_, h) => {
                let need = h.map_or(HEADER_SIZE, |h| h.total_size() as usize);
                Err(Error::Truncated {
                    need,
                    have: self.pos as usize + self.pending(),
                })
            }
        }
    }

    fn pending(&self) -> usize {
        if self.part == Part::Header {
            self.buf_len
        } else {
            0
        }
    }

    fn take(&mut self, data: &[u8], want: usize) -> usize {
        let n = (want - self.buf_len).min(data.len());
        self.buf[self.buf_len..self.buf_len + n].copy_from_slice(&data[..n]);
        self.buf_len += n;
        n
    }

    fn advance(&mut self, hashed: &[u8]) {
        self.hasher.update(hashed);
        self.pos += hashed.len() as u32;
    }

    fn feed_header(&mut self, data: &[u8]) -> Result<usize, Error> {
        let n = self.take(data, HEADER_SIZE);
        if self.buf_len < HEADER_SIZE {
            return Ok(n);
        }
        let header = HeaderRepr::parse(&Header::new_checked(&self.buf[..])?)?;
        let buf = self.buf;
        self.advance(&buf);
        self.header = Some(header);
        self.buf_len = 0;
        self.part = if header.reloc_count > 0 {
            Part::Relocs
        } else {
            Part::Image
        };
        Ok(n)
    }

    fn feed_relocs(&mut self, data: &[u8]) -> Result<usize, Error> {
        let n = self.take(data, 4);
        if self.buf_len < 4 {
            return Ok(n);
        }
        let word = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
        let offset = le32(&word);
        let image_size = self.header.map_or(0, |h| h.image_size);
        let sorted = self.last_reloc.is_none_or(|last| offset > last);
        if offset % 4 != 0 || offset > image_size.saturating_sub(4) || !sorted {
            return Err(Error::BadRelocation {
                index: self.relocs_seen,
                offset,
            });
        }
        self.advance(&word);
        self.last_reloc = Some(offset);
        self.relocs_seen += 1;
        self.buf_len = 0;
        if Some(self.relocs_seen) == self.header.map(|h| h.reloc_count) {
            self.part = Part::Image;
        }
        Ok(n)
    }

    fn feed_image(&mut self, data: &[u8]) -> usize {
        let end = self.header.map_or(0, |h| h.digest_offset());
        let n = ((end - self.pos) as usize).min(data.len());
        self.advance(&data[..n]);
        if self.pos == end {
            self.part = Part::Digest;
        }
        n
    }

    fn feed_digest(&mut self, data: &[u8]) -> usize {
        let n = self.take(data, DIGEST_SIZE);
        if self.buf_len == DIGEST_SIZE {
            self.part = Part::Done;
        }
        n
    }
}
