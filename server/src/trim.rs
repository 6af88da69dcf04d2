//! `--SAFETRIM`, done right: a Lua 5.1 lexer decides what is a comment, a string or code.
//!
//! A `.lua` source that contains the short comment `--SAFETRIM` is trimmed before it is sent:
//! - comments (short `-- ...` and long `--[==[ ... ]==]`) are removed; a long comment inside a line becomes
//!   one space (a comment separates tokens), one spanning lines becomes its line breaks;
//! - spaces, tabs, vertical tabs and form feeds at the start and the end of each line are removed;
//! - strings (`"..."`, `'...'`, `[==[ ... ]==]`) and all other code are kept byte for byte;
//! - every line break character is kept, in order, so every line keeps its number (a space is put between
//!   a `\r` and a `\n` that were separate line breaks, so that Lua does not read them as one).
//!
//! Because only whitespace and comments change and line numbers are kept, a trimmed chunk compiles to the
//! same Lua 5.1 bytecode, debug information included, as its source.

use std::ops::Range;

/// What a run of source bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Anything that is not one of the others (names, numbers, operators).
    Code,
    /// Spaces, tabs, vertical tabs, form feeds.
    Space,
    /// One `\n` or `\r`.
    Newline,
    /// A short or long string, kept verbatim.
    Str,
    /// `--` to the end of the line (the line break excluded).
    ShortComment,
    /// `--[==[ ... ]==]`.
    LongComment,
}

/// Splits Lua 5.1 source into runs. Total: any input, compilable or not, is split without panicking.
struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0b | 0x0c)
}

fn is_newline(b: u8) -> bool {
    matches!(b, b'\n' | b'\r')
}

impl<'a> Lexer<'a> {
    fn at(&self, i: usize) -> Option<u8> {
        self.src.get(i).copied()
    }

    /// If a long bracket `[` `=`* `[` opens at `i`, its level (number of `=`).
    fn long_open(&self, i: usize) -> Option<usize> {
        if self.at(i) != Some(b'[') {
            return None;
        }
        let level = self.src[i + 1..].iter().take_while(|&&b| b == b'=').count();
        (self.at(i + 1 + level) == Some(b'[')).then_some(level)
    }

    /// The end (exclusive) of a long bracket of `level` whose body starts at `i`; the input end if unclosed.
    fn long_close(&self, mut i: usize, level: usize) -> usize {
        while i < self.src.len() {
            if self.src[i] == b']' {
                let eqs = self.src[i + 1..].iter().take_while(|&&b| b == b'=').count();
                if eqs == level && self.at(i + 1 + level) == Some(b']') {
                    return i + level + 2;
                }
            }
            i += 1;
        }
        self.src.len()
    }

    /// The end (exclusive) of a short string opened at `start` by `quote`.
    fn short_string_end(&self, start: usize, quote: u8) -> usize {
        let mut i = start + 1;
        while let Some(b) = self.at(i) {
            match b {
                b'\\' => {
                    i += 1;
                    // An escaped line break: Lua consumes a `\r\n` or `\n\r` pair as one.
                    if let Some(nl @ (b'\n' | b'\r')) = self.at(i) {
                        if matches!(self.at(i + 1), Some(n) if is_newline(n) && n != nl) {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                b if b == quote => return i + 1,
                // A raw line break ends an (unfinished) string: such input does not compile anyway.
                b if is_newline(b) => return i,
                _ => i += 1,
            }
        }
        self.src.len()
    }
}

impl Iterator for Lexer<'_> {
    type Item = (Kind, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.pos;
        let b = self.at(start)?;
        let (kind, end) = if is_newline(b) {
            (Kind::Newline, start + 1)
        } else if is_space(b) {
            let n = self.src[start..]
                .iter()
                .take_while(|&&b| is_space(b))
                .count();
            (Kind::Space, start + n)
        } else if b == b'-' && self.at(start + 1) == Some(b'-') {
            match self.long_open(start + 2) {
                Some(level) => (Kind::LongComment, self.long_close(start + 4 + level, level)),
                None => {
                    let n = self.src[start..]
                        .iter()
                        .take_while(|&&b| !is_newline(b))
                        .count();
                    (Kind::ShortComment, start + n)
                }
            }
        } else if b == b'"' || b == b'\'' {
            (Kind::Str, self.short_string_end(start, b))
        } else if let Some(level) = self.long_open(start) {
            (Kind::Str, self.long_close(start + 2 + level, level))
        } else {
            // Code: one byte, then more while nothing else could start.
            let n = 1 + self.src[start + 1..]
                .iter()
                .take_while(|&&b| !(is_newline(b) || is_space(b) || b"-\"'[".contains(&b)))
                .count();
            (Kind::Code, start + n)
        };
        self.pos = end;
        Some((kind, start..end))
    }
}

fn lex(src: &[u8]) -> Lexer<'_> {
    Lexer { src, pos: 0 }
}

/// Whether `src` asks to be trimmed: it holds the short comment `--SAFETRIM` (trailing blanks allowed).
pub fn wants_trim(src: &[u8]) -> bool {
    lex(src).any(|(kind, r)| {
        kind == Kind::ShortComment && src[r.start + 2..r.end].trim_ascii_end() == b"SAFETRIM"
    })
}

/// Trims `src` as described in the module documentation.
pub fn safetrim(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len());
    let mut pending: Vec<u8> = Vec::new();
    let mut line_start = true;
    // Source index just after the newline character most recently written to `out`.
    let mut last_newline_end = usize::MAX;
    let mut emit_newline = |out: &mut Vec<u8>, at: usize, nl: u8| {
        let pairs_with_last = matches!(out.last(), Some(&l) if is_newline(l) && l != nl);
        if pairs_with_last && last_newline_end != at {
            out.push(b' ');
        }
        out.push(nl);
        last_newline_end = at + 1;
    };
    for (kind, r) in lex(src) {
        match kind {
            Kind::Newline => {
                pending.clear();
                emit_newline(&mut out, r.start, src[r.start]);
                line_start = true;
            }
            Kind::Space if !line_start => pending.extend_from_slice(&src[r]),
            Kind::Space | Kind::ShortComment => {}
            Kind::LongComment => {
                let mut breaks = r.clone().filter(|&i| is_newline(src[i])).peekable();
                if breaks.peek().is_none() {
                    if !line_start {
                        pending.push(b' ');
                    }
                } else {
                    pending.clear();
                    for i in breaks {
                        emit_newline(&mut out, i, src[i]);
                    }
                    line_start = true;
                }
            }
            Kind::Code | Kind::Str => {
                out.append(&mut pending);
                out.extend_from_slice(&src[r]);
                line_start = false;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::luac;

    /// Asserts: the input compiles, the output compiles, and both give identical bytecode (same code, same
    /// constants, same line numbers).
    fn assert_equivalent(src: &[u8]) -> Vec<u8> {
        let before = luac::compile("t.lua", src).expect("test input must compile");
        let trimmed = safetrim(src);
        let after = luac::compile("t.lua", &trimmed).unwrap_or_else(|e| {
            panic!(
                "trimmed output does not compile: {e}\n--- input\n{}\n--- output\n{}",
                String::from_utf8_lossy(src),
                String::from_utf8_lossy(&trimmed)
            )
        });
        assert_eq!(
            before,
            after,
            "bytecode differs\n--- input\n{}\n--- output\n{}",
            String::from_utf8_lossy(src),
            String::from_utf8_lossy(&trimmed)
        );
        trimmed
    }

    #[test]
    fn marker_is_a_comment_not_a_string() {
        assert!(wants_trim(b"--SAFETRIM\nlocal x = 1\n"));
        assert!(wants_trim(b"local x = 1 --SAFETRIM  \r\n"));
        assert!(!wants_trim(b"s = '--SAFETRIM'\n"));
        assert!(!wants_trim(b"--[[\n--SAFETRIM\n]]\n"));
        assert!(!wants_trim(b"-- SAFETRIM please\n"));
    }

    #[test]
    fn trims_like_the_original_on_plain_code() {
        let src = b"--SAFETRIM\n  local x = 1   -- one\n\tif x then\n\t\tprint(x) \n\tend\n";
        let out = assert_equivalent(src);
        assert_eq!(out, b"\nlocal x = 1\nif x then\nprint(x)\nend\n");
    }

    #[test]
    fn dashes_inside_strings_survive() {
        let src = br#"--SAFETRIM
local a = "x -- y" -- real comment
local b = 'it\'s -- not' .. "\"--\""
local c = "line \
  -- continued" -- gone
print(a, b, c)
"#;
        let out = assert_equivalent(src);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""x -- y""#));
        assert!(text.contains("  -- continued\""));
        assert!(!text.contains("real comment"));
        assert!(!text.contains("gone"));
    }

    #[test]
    fn long_comments_are_removed_whole() {
        let src = b"--SAFETRIM\n--[==[\nlocal broken = ]] (\n-- ]=] still comment\n]==] local x = 1\nlocal y--[[inline]]=2\nreturn x--[[a]]+--[=[b\n]=]y\n";
        let out = assert_equivalent(src);
        assert_eq!(
            out,
            b"\n\n\n\nlocal x = 1\nlocal y =2\nreturn x +\ny\n".as_slice()
        );
    }

    #[test]
    fn long_strings_containing_dashes_survive() {
        let src = b"--SAFETRIM\nlocal s = [==[\n  -- kept ]] ]=]\n  indented ]==]  -- comment\nlocal t = [[--]] .. x[ [=[k]=] ]\nreturn s, t\n";
        let out = assert_equivalent(src);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("[==[\n  -- kept ]] ]=]\n  indented ]==]\n"));
        assert!(text.contains("[[--]]"));
    }

    #[test]
    fn crlf_files_keep_their_line_breaks() {
        let src = b"--SAFETRIM\r\n  local x = 'a--b'  -- c\r\n\r\n\tlocal s = \"q\\\r\n  r\" --[[ x\r\n y ]] return x, s\r\n";
        let out = assert_equivalent(src);
        assert_eq!(
            out,
            b"\r\nlocal x = 'a--b'\r\n\r\nlocal s = \"q\\\r\n  r\"\r\nreturn x, s\r\n".as_slice()
        );
    }

    #[test]
    fn separate_cr_and_lf_breaks_stay_separate() {
        // `\r` then `\n` with something between are two line breaks for Lua; trimmed they must stay two.
        let src = b"local a = 1\r   \nlocal b = 2\r-- c\nlocal c = 3\r--[[\n]]\nerror(a)";
        let out = assert_equivalent(src);
        assert_eq!(
            out,
            b"local a = 1\r \nlocal b = 2\r \nlocal c = 3\r \n\nerror(a)".as_slice()
        );
    }

    #[test]
    fn tokens_never_merge() {
        let src = b"local--[[c]]x=1 return--[[c]]x--[[c]]..--[[c]]'s'";
        assert_equivalent(src);
    }

    #[test]
    fn unfinished_input_does_not_panic() {
        for src in [
            &b"--[==[ open"[..],
            b"x = [=[ open",
            b"x = 'open",
            b"x = \"a\\",
            b"x = \"a\n",
            b"-",
            b"--",
            b"[=",
        ] {
            let _ = safetrim(src);
            let _ = wants_trim(src);
        }
    }

    /// Random sources built from tricky fragments: whenever the input compiles, the output must too, with
    /// identical bytecode.
    #[test]
    fn random_sources_trim_to_the_same_bytecode() {
        const FRAGMENTS: &[&str] = &[
            "local a = 1",
            "a = a + 1",
            "a = a - -1",
            "a = 1e-3",
            "print('--', \"--[[\")",
            "s = [[--]]",
            "s = [==[ ]] -- ]=] ]==]",
            "s = [[\n-- x\n]]",
            "s = \"\\\n--\"",
            "s = 'a\\'--'",
            "-- comment",
            "--[[ long\n comment ]]",
            "--[=[ ]] ]=]",
            "--[==x short",
            "--[[x]]",
            "t = {1, 2}",
            "t = {[ [[k]] ] = 1}",
            "if a then a = 2 end",
            "local function f(x) return x end",
            "x = #t",
        ];
        const GLUE: &[&str] = &[
            " ",
            "\t",
            "\n",
            "\r\n",
            "\r",
            "  \n  ",
            "\n\r",
            " --[[g]] ",
            "--g\n",
            "\r\t\n",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut compiled = 0;
        for _ in 0..400 {
            let mut src = String::new();
            for _ in 0..1 + next(12) {
                src.push_str(FRAGMENTS[next(FRAGMENTS.len())]);
                src.push_str(GLUE[next(GLUE.len())]);
            }
            if luac::check("t.lua", src.as_bytes()).is_ok() {
                assert_equivalent(src.as_bytes());
                compiled += 1;
            }
        }
        assert!(compiled > 100, "only {compiled} random sources compiled");
    }
}
