//! The minimal JSON this crate needs: a parser for the flat objects a luaOTA server sends (strings,
//! integers, `true`/`false`/`null`, and one nested object, `files`), decoding strings in place; and a
//! writer for the device's own records. No floats, no arrays, no allocation, no `core::fmt`.

use crate::config::FILES_MAX;

/// Why a record's JSON was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// A byte that cannot start or continue the expected token.
    Syntax,
    /// The JSON ends inside a string, an escape or an object.
    Unterminated,
    /// A bad escape (`\x`, a bad `\u` digit, a lone surrogate).
    Escape,
    /// A raw control character inside a string.
    Control,
    /// A number with a fraction or an exponent (this device parses integers only).
    NotInteger,
    /// An array, or an object nested anywhere but as the value of `files`.
    Unsupported,
    /// Something follows the closing brace.
    Trailing,
}

/// A JSON error and the byte offset (in the record's JSON) where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonFault {
    /// What is wrong.
    pub kind: JsonError,
    /// Where, in bytes from the start of the JSON.
    pub at: usize,
}

/// A decoded string: a range of the (rewritten) record buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
}

/// A parsed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Val {
    Str(Span),
    /// `None`: negative or over `u32::MAX`.
    Int(Option<u32>),
    Bool(bool),
    Null,
    /// A nested object (only `files`; its entries are in [`Fields::files`]).
    Object,
}

/// The keys the device understands; everything else is parsed and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    A,
    R,
    Data,
    Name,
    From,
    To,
    Offset,
    Len,
    Chk,
    Server,
    Port,
    Leave,
    Files,
}

/// Number of [`Key`]s.
const KEY_COUNT: usize = 13;

impl Key {
    /// The key named `name`. A `match` rather than a table of slices: a table of pointers would need
    /// relocating, and this code runs in place from flash where nothing can be patched.
    fn from_name(name: &[u8]) -> Option<Key> {
        Some(match name {
            b"a" => Key::A,
            b"r" => Key::R,
            b"data" => Key::Data,
            b"name" => Key::Name,
            b"from" => Key::From,
            b"to" => Key::To,
            b"offset" => Key::Offset,
            b"len" => Key::Len,
            b"chk" => Key::Chk,
            b"server" => Key::Server,
            b"port" => Key::Port,
            b"leave" => Key::Leave,
            b"files" => Key::Files,
            _ => return None,
        })
    }
}

/// The known fields of one record (the last occurrence of a key wins).
#[derive(Debug, Default)]
pub(crate) struct Fields {
    vals: [Option<Val>; KEY_COUNT],
    /// The first [`FILES_MAX`] entries of the `files` object, in order (the rest are skipped).
    pub files: heapless::Vec<(Span, Val), FILES_MAX>,
}

impl Fields {
    pub fn get(&self, key: Key) -> Option<Val> {
        self.vals[key as usize]
    }
}

/// The bytes of `span` in `buf` (empty if out of range, which the parser never produces).
pub(crate) fn text(buf: &[u8], span: Span) -> &[u8] {
    buf.get(span.start..span.end).unwrap_or(&[])
}

type R<T> = Result<T, JsonFault>;

struct Parser<'a> {
    b: &'a mut [u8],
    /// Read position.
    r: usize,
    /// Write position of decoded strings; always `w <= r`, so decoding never overwrites unread input.
    w: usize,
}

/// Parses `buf` (exactly one JSON object) into its known fields, decoding strings in place: `buf` is
/// rewritten and the returned spans point into it.
pub(crate) fn parse(buf: &mut [u8]) -> R<Fields> {
    let mut p = Parser { b: buf, r: 0, w: 0 };
    let mut f = Fields::default();
    p.object(|p, key| {
        let key = Key::from_name(text(p.b, key));
        p.ws();
        if key == Some(Key::Files) && p.peek() == Some(b'{') {
            f.files.clear();
            let files = &mut f.files;
            p.object(|p, name| {
                let v = p.scalar()?;
                // Entries past FILES_MAX are parsed (the JSON must still be valid) and skipped.
                let _ = files.push((name, v));
                Ok(())
            })?;
            f.vals[Key::Files as usize] = Some(Val::Object);
            return Ok(());
        }
        let v = p.scalar()?;
        if let Some(key) = key {
            f.vals[key as usize] = Some(v);
        }
        Ok(())
    })?;
    p.ws();
    if p.r != p.b.len() {
        return p.fail(JsonError::Trailing);
    }
    Ok(f)
}

impl Parser<'_> {
    fn fail<T>(&self, kind: JsonError) -> R<T> {
        Err(JsonFault { kind, at: self.r })
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.r).copied()
    }

    fn bump(&mut self) -> R<u8> {
        match self.peek() {
            Some(c) => {
                self.r += 1;
                Ok(c)
            }
            None => self.fail(JsonError::Unterminated),
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
            self.r += 1;
        }
    }

    fn eat(&mut self, c: u8) -> R<()> {
        self.ws();
        match self.peek() {
            Some(x) if x == c => {
                self.r += 1;
                Ok(())
            }
            Some(_) => self.fail(JsonError::Syntax),
            None => self.fail(JsonError::Unterminated),
        }
    }

    fn push(&mut self, c: u8) {
        if let Some(slot) = self.b.get_mut(self.w) {
            *slot = c;
            self.w += 1;
        }
    }

    /// `{ "key": value, ... }`, calling `each` with the parser just after each key's colon.
    fn object(&mut self, mut each: impl FnMut(&mut Self, Span) -> R<()>) -> R<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.r += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.eat(b':')?;
            each(self, key)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.r += 1,
                Some(b'}') => {
                    self.r += 1;
                    return Ok(());
                }
                Some(_) => return self.fail(JsonError::Syntax),
                None => return self.fail(JsonError::Unterminated),
            }
        }
    }

    fn scalar(&mut self) -> R<Val> {
        self.ws();
        match self.peek() {
            Some(b'"') => Ok(Val::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.int(),
            Some(b't') => self.word(b"true", Val::Bool(true)),
            Some(b'f') => self.word(b"false", Val::Bool(false)),
            Some(b'n') => self.word(b"null", Val::Null),
            Some(b'[' | b'{') => self.fail(JsonError::Unsupported),
            Some(_) => self.fail(JsonError::Syntax),
            None => self.fail(JsonError::Unterminated),
        }
    }

    fn word(&mut self, word: &[u8], v: Val) -> R<Val> {
        if self.b.get(self.r..self.r + word.len()) == Some(word) {
            self.r += word.len();
            Ok(v)
        } else {
            self.fail(JsonError::Syntax)
        }
    }

    fn int(&mut self) -> R<Val> {
        let neg = self.peek() == Some(b'-');
        if neg {
            self.r += 1;
        }
        let (mut v, mut digits) = (Some(0u32), 0);
        while let Some(c @ b'0'..=b'9') = self.peek() {
            self.r += 1;
            digits += 1;
            v = v
                .and_then(|v| v.checked_mul(10))
                .and_then(|v| v.checked_add(u32::from(c - b'0')));
        }
        match self.peek() {
            _ if digits == 0 => self.fail(JsonError::Syntax),
            Some(b'.' | b'e' | b'E') => self.fail(JsonError::NotInteger),
            _ if neg && v != Some(0) => Ok(Val::Int(None)),
            _ => Ok(Val::Int(v)),
        }
    }

    fn string(&mut self) -> R<Span> {
        self.ws();
        if self.peek() != Some(b'"') {
            return self.fail(if self.peek().is_none() {
                JsonError::Unterminated
            } else {
                JsonError::Syntax
            });
        }
        self.r += 1;
        let start = self.w;
        loop {
            let c = self.bump()?;
            match c {
                b'"' => return Ok(Span { start, end: self.w }),
                b'\\' => {
                    let out = match self.bump()? {
                        e @ (b'"' | b'\\' | b'/') => e,
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let cp = self.unicode()?;
                            self.utf8(cp);
                            continue;
                        }
                        _ => {
                            self.r -= 1;
                            return self.fail(JsonError::Escape);
                        }
                    };
                    self.push(out);
                }
                0..=0x1f => {
                    self.r -= 1;
                    return self.fail(JsonError::Control);
                }
                _ => self.push(c),
            }
        }
    }

    fn hex4(&mut self) -> R<u32> {
        let mut v = 0;
        for _ in 0..4 {
            let c = self.bump()?;
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return self.fail(JsonError::Escape),
            };
            v = v * 16 + u32::from(d);
        }
        Ok(v)
    }

    /// The code point after `\u` (a surrogate pair takes both escapes).
    fn unicode(&mut self) -> R<u32> {
        let hi = self.hex4()?;
        match hi {
            0xd800..=0xdbff => {
                if self.bump()? != b'\\' || self.bump()? != b'u' {
                    return self.fail(JsonError::Escape);
                }
                let lo = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&lo) {
                    return self.fail(JsonError::Escape);
                }
                Ok(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
            }
            0xdc00..=0xdfff => self.fail(JsonError::Escape),
            _ => Ok(hi),
        }
    }

    /// Writes `cp` as UTF-8: at most 3 bytes for a 6-byte escape, 4 for a 12-byte pair, so `w <= r` holds.
    fn utf8(&mut self, cp: u32) {
        if cp < 0x80 {
            self.push(cp as u8);
        } else if cp < 0x800 {
            self.push(0xc0 | (cp >> 6) as u8);
            self.push(0x80 | (cp & 0x3f) as u8);
        } else if cp < 0x10000 {
            self.push(0xe0 | (cp >> 12) as u8);
            self.push(0x80 | ((cp >> 6) & 0x3f) as u8);
            self.push(0x80 | (cp & 0x3f) as u8);
        } else {
            self.push(0xf0 | (cp >> 18) as u8);
            self.push(0x80 | ((cp >> 12) & 0x3f) as u8);
            self.push(0x80 | ((cp >> 6) & 0x3f) as u8);
            self.push(0x80 | (cp & 0x3f) as u8);
        }
    }
}

/// Appends JSON text to a fixed buffer; remembers whether everything fit.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    full: bool,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            buf,
            len: 0,
            full: false,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Size of the buffer.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Cuts back to `len` bytes (to undo a part that did not fit).
    pub fn truncate(&mut self, len: usize) {
        if len <= self.len {
            self.len = len;
            self.full = false;
        }
    }

    /// The length written, or `None` if something did not fit.
    pub fn finish(&self) -> Option<usize> {
        (!self.full).then_some(self.len)
    }

    /// Whether something did not fit.
    pub fn is_full(&self) -> bool {
        self.full
    }

    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) if !self.full => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            _ => self.full = true,
        }
        self
    }

    /// A quoted, escaped JSON string.
    pub fn string(&mut self, s: &[u8]) -> &mut Self {
        self.raw(b"\"");
        for &c in s {
            match c {
                b'"' => self.raw(b"\\\""),
                b'\\' => self.raw(b"\\\\"),
                b'\n' => self.raw(b"\\n"),
                b'\r' => self.raw(b"\\r"),
                b'\t' => self.raw(b"\\t"),
                0..=0x1f => self.raw(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    b'0' + (c >> 4),
                    b"0123456789abcdef"[usize::from(c & 15)],
                ]),
                _ => self.raw(&[c]),
            };
        }
        self.raw(b"\"")
    }

    /// A decimal integer.
    pub fn int(&mut self, mut n: u32) -> &mut Self {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.raw(&digits[i..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{format, string::String};

    fn parsed(json: &str) -> ([u8; 256], R<Fields>) {
        let mut buf = [0u8; 256];
        buf[..json.len()].copy_from_slice(json.as_bytes());
        let f = parse(&mut buf[..json.len()]);
        (buf, f)
    }

    #[test]
    fn strings_decode_in_place() {
        let (buf, f) = parsed(r#"{"a":"dl","name":"a\"b\\c\/d\n\u00e9\ud83d\ude00","x":[1]}"#);
        assert_eq!(f.unwrap_err().kind, JsonError::Unsupported);
        let (buf2, f2) = parsed(r#"{"a":"dl","name":"a\"b\\c\/d\n\u00e9\ud83d\ude00"}"#);
        let f2 = f2.unwrap();
        let Some(Val::Str(name)) = f2.get(Key::Name) else {
            panic!()
        };
        assert_eq!(text(&buf2, name), "a\"b\\c/d\né😀".as_bytes());
        let _ = buf;
    }

    #[test]
    fn integers_only() {
        let (_, f) = parsed(r#"{"data":1024,"len":-3,"offset":4294967296,"port":0}"#);
        let f = f.unwrap();
        assert_eq!(f.get(Key::Data), Some(Val::Int(Some(1024))));
        assert_eq!(f.get(Key::Len), Some(Val::Int(None)));
        assert_eq!(f.get(Key::Offset), Some(Val::Int(None)));
        assert_eq!(f.get(Key::Port), Some(Val::Int(Some(0))));
        for bad in [r#"{"data":1.5}"#, r#"{"data":1e3}"#] {
            assert_eq!(parsed(bad).1.unwrap_err().kind, JsonError::NotInteger);
        }
    }

    #[test]
    fn errors_are_typed() {
        let cases = [
            (r#"{"a":"pu"} x"#, JsonError::Trailing),
            (r#"{"a":"pu""#, JsonError::Unterminated),
            (r#"{"a":"p"#, JsonError::Unterminated),
            (r#"{"a":"\q"}"#, JsonError::Escape),
            (r#"{"a":"\udc00"}"#, JsonError::Escape),
            (r#"{"a":"\ud800x"}"#, JsonError::Escape),
            ("{\"a\":\"\x01\"}", JsonError::Control),
            (r#"{"a":tru}"#, JsonError::Syntax),
            (r#"{"a" 1}"#, JsonError::Syntax),
            (r#"{a:1}"#, JsonError::Syntax),
            (r#"{"files":{"x":{}}}"#, JsonError::Unsupported),
            (r#"{"a":{}}"#, JsonError::Unsupported),
            (r#"[1]"#, JsonError::Syntax),
            ("", JsonError::Unterminated),
        ];
        for (json, kind) in cases {
            assert_eq!(parsed(json).1.unwrap_err().kind, kind, "{json}");
        }
    }

    #[test]
    fn files_are_bounded() {
        let (_, f) = parsed(r#"{"files":{"a":1,"b":2},"x":null,"y":true}"#);
        let f = f.unwrap();
        assert_eq!(f.files.len(), 2);
        let many: String = (0..9).map(|i| format!("\"f{i}\":{i},")).collect();
        let json = format!("{{\"files\":{{{}}}}}", many.trim_end_matches(','));
        let (buf, f) = parsed(&json);
        let f = f.unwrap();
        assert_eq!(f.files.len(), FILES_MAX, "the first FILES_MAX are kept");
        assert_eq!(text(&buf, f.files[FILES_MAX - 1].0), b"f7");
    }

    #[test]
    fn writer_escapes_and_counts() {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        w.raw(b"{")
            .string(b"a\"\\\n\x01")
            .raw(b":")
            .int(0)
            .raw(b",")
            .int(4294967295);
        let n = w.finish().unwrap();
        assert_eq!(&buf[..n], b"{\"a\\\"\\\\\\n\\u0001\":0,4294967295");
        let mut small = [0u8; 3];
        let mut w = Writer::new(&mut small);
        w.raw(b"ab").raw(b"cd");
        assert_eq!(w.finish(), None);
    }
}
