//! The bounded reader under every session: v1 lines and v2 frames, read into one fixed buffer, so a
//! line or frame over the limit is refused, never buffered.

use std::io;

use rota_wire::{Header, HEADER_LEN, MAX_FRAME};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::v1;

/// Reads lines of at most [`v1::MAX_LINE`] bytes into a fixed buffer; a longer line is refused, never
/// buffered.
pub(super) struct LineReader<S> {
    pub(super) inner: S,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// What a bounded line read can end in.
pub(super) enum LineError {
    TooLong,
    Eof,
    Io(io::Error),
}

impl<S: AsyncRead + Unpin> LineReader<S> {
    pub(super) fn new(inner: S) -> Self {
        LineReader {
            inner,
            buf: vec![0; v1::MAX_LINE].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes after the buffered ones; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.inner.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// The next byte without consuming it; `None` at end of stream.
    pub(super) async fn peek(&mut self) -> io::Result<Option<u8>> {
        if self.start == self.end && self.fill().await? == 0 {
            return Ok(None);
        }
        Ok(Some(self.buf[self.start]))
    }

    /// Makes at least `n` bytes available after `start` (`n` at most the buffer's size).
    async fn want(&mut self, n: usize) -> Result<(), LineError> {
        while self.end - self.start < n {
            match self.fill().await {
                Ok(0) => return Err(LineError::Eof),
                Ok(_) => {}
                Err(e) => return Err(LineError::Io(e)),
            }
        }
        Ok(())
    }

    /// The next v2 frame. The header is checked (magic, length bound) before the rest is read, so an
    /// oversized frame is refused without buffering it.
    pub(super) async fn read_frame(&mut self) -> Result<&[u8], FrameError> {
        self.want(HEADER_LEN).await.map_err(FrameError::Read)?;
        let header = Header::parse(&self.buf[self.start..self.start + HEADER_LEN])
            .map_err(FrameError::Frame)?;
        let len = header.frame_len();
        self.want(len).await.map_err(FrameError::Read)?;
        let frame = self.start..self.start + len;
        self.start = frame.end;
        Ok(&self.buf[frame])
    }

    /// The next line, line feed included.
    pub(super) async fn read_line(&mut self) -> Result<&[u8], LineError> {
        let mut scanned = 0;
        loop {
            let pending = &self.buf[self.start + scanned..self.end];
            if let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line = self.start..self.start + scanned + i + 1;
                self.start = line.end;
                return Ok(&self.buf[line]);
            }
            scanned = self.end - self.start;
            if scanned == self.buf.len() {
                return Err(LineError::TooLong);
            }
            match self.fill().await {
                Ok(0) => return Err(LineError::Eof),
                Ok(_) => {}
                Err(e) => return Err(LineError::Io(e)),
            }
        }
    }
}

/// What a v2 frame read can end in.
pub(super) enum FrameError {
    Read(LineError),
    Frame(rota_wire::Error),
}

// The v2 frame buffer is the line buffer.
const _: () = assert!(MAX_FRAME <= v1::MAX_LINE);
