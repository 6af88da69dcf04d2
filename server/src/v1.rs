//! luaOTA protocol v1 on the server: typed records (parse and emit) and the rules of the server's
//! side of the wire.
//!
//! The framing, the tags and their verification are rota-luaota's, the one v1 record layer, shared with
//! the device ([`rota_luaota::Record`], [`rota_luaota::Line`], [`Signer`]); this module adds what only
//! the server has: [`Record::object`] (the JSON as serde_json values, depth-checked), the `*Repr` types
//! (the parsed HI, commands and replies), and emitting whole records as one segment of at most
//! [`MAX_SEGMENT`] bytes with a payload of at most [`MAX_CHUNK`]. Every malformed input gives a typed
//! [`Error`]; nothing here panics on any input.
//!
//! ```text
//! record  := json tag "\n" [payload]
//! tag     := last 3 bytes of HMAC-MD5(secret, json), 6 lowercase hex chars
//! payload := raw bytes, present only when json has "data": N
//! ```

use rota_luaota::{Line, RecordError};
use serde_json::{Map, Value};

pub use rota_luaota::{record_len, Signer, MIN_JSON_LEN, TAG_LEN};

/// Largest record the server may write: the NodeMCU client reads one TCP segment per record.
pub const MAX_SEGMENT: usize = 1460;
/// Largest payload of one `pu`/`dl`/`cm` record.
pub const MAX_CHUNK: usize = 1024;
/// Longest device line (JSON + tag + line feed) the server accepts.
pub const MAX_LINE: usize = 4096;
/// Deepest JSON nesting accepted in any record.
pub const MAX_JSON_DEPTH: usize = 8;
/// The signed-over JSON of the "no update" answer.
pub const NO_UPDATE_JSON: &str = r#"{"r":"OK!"}"#;

/// A malformed or unacceptable v1 record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The record has no line feed ending its JSON and tag.
    #[error("record has no line feed")]
    NoLineFeed,
    /// Something follows the line feed of a device line.
    #[error("{0} unexpected byte(s) after the line feed")]
    TrailingBytes(usize),
    /// The JSON is shorter than the client's 10-byte minimum, or there is no room for a tag.
    #[error("record JSON of {0} bytes is shorter than the {MIN_JSON_LEN}-byte minimum")]
    TooShort(usize),
    /// The tag is not 6 lowercase hex characters.
    #[error("tag is not 6 lowercase hex characters")]
    TagSyntax,
    /// The tag does not verify (the sessions report which record's: see `session::SessionError`).
    #[error("tag does not verify")]
    BadTag,
    /// The JSON does not parse.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The JSON nests deeper than [`MAX_JSON_DEPTH`].
    #[error("JSON nests deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep,
    /// The JSON is not an object.
    #[error("JSON is not an object")]
    NotObject,
    /// A required field is missing.
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    /// A field has the wrong type or value.
    #[error("field `{field}` must be {expected}")]
    Field {
        /// The offending field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The first record of a session is not an `HI`.
    #[error("expected an HI record, got a={0:?}")]
    NotHi(String),
    /// A record to emit would not fit in one segment.
    #[error("record of {0} bytes exceeds the {MAX_SEGMENT}-byte segment")]
    SegmentTooLong(usize),
    /// A payload to emit is longer than [`MAX_CHUNK`].
    #[error("payload of {0} bytes exceeds the {MAX_CHUNK}-byte chunk")]
    PayloadTooLong(usize),
    /// The payload that came with a record does not match its `data` field.
    #[error("payload of {actual} bytes but data field says {declared}")]
    PayloadLength {
        /// The `data` field.
        declared: u64,
        /// The bytes present.
        actual: usize,
    },
    /// JSON to emit contains a raw line feed.
    #[error("JSON contains a raw line feed")]
    RawLineFeed,
}

impl From<RecordError> for Error {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::NoLineFeed => Error::NoLineFeed,
            RecordError::TrailingBytes(n) => Error::TrailingBytes(n),
            RecordError::TooShort(n) => Error::TooShort(n),
            RecordError::TagSyntax => Error::TagSyntax,
            RecordError::BadTag => Error::BadTag,
            RecordError::RawLineFeed => Error::RawLineFeed,
            RecordError::PayloadLength { declared, actual } => {
                Error::PayloadLength { declared, actual }
            }
        }
    }
}

/// Result of v1 parsing and emitting.
pub type Result<T> = core::result::Result<T, Error>;

/// A checked view of one record ([`rota_luaota::Record`]: JSON, tag and payload), with its JSON as
/// serde_json values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a>(rota_luaota::Record<'a>);

impl<'a> Record<'a> {
    /// Checks a device line (`json tag "\n"`, nothing after the line feed).
    pub fn parse_line(line: &'a [u8]) -> Result<Self> {
        Ok(Record(rota_luaota::Record::parse_line(line)?))
    }

    /// Checks one server segment (`json tag "\n" payload`); the payload is everything after the line feed.
    pub fn parse_segment(segment: &'a [u8]) -> Result<Self> {
        Ok(Record(rota_luaota::Record::parse_segment(segment)?))
    }

    /// The signed JSON bytes.
    pub fn json(&self) -> &'a [u8] {
        self.0.json()
    }

    /// The 6 tag characters.
    pub fn tag(&self) -> &'a [u8] {
        self.0.tag()
    }

    /// The bytes after the line feed.
    pub fn payload(&self) -> &'a [u8] {
        self.0.payload()
    }

    /// Whether the tag is right under `signer`'s secret (compared in constant time).
    pub fn verify(&self, signer: &Signer) -> bool {
        self.0.verify(signer).is_ok()
    }

    /// The payload, checked to be exactly `declared` bytes (the `data` field).
    pub fn payload_of(&self, declared: u64) -> Result<&'a [u8]> {
        Ok(self.0.payload_of(declared)?)
    }

    /// Parses the JSON into an object, refusing deep nesting before parsing.
    pub fn object(&self) -> Result<Map<String, Value>> {
        parse_object(self.json())
    }
}

/// Parses `json` as one JSON object, refusing nesting deeper than [`MAX_JSON_DEPTH`] up front.
pub fn parse_object(json: &[u8]) -> Result<Map<String, Value>> {
    check_depth(json, MAX_JSON_DEPTH)?;
    match serde_json::from_slice::<Value>(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::NotObject),
        Err(e) => Err(Error::Json(e.to_string())),
    }
}

/// Refuses JSON whose brackets nest deeper than `max` (strings are skipped), without allocating.
fn check_depth(json: &[u8], max: usize) -> Result<()> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(Error::TooDeep);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Emits a device line: `json tag "\n"`, signed by `signer`.
pub fn emit_line(signer: &Signer, json: &str) -> Result<Vec<u8>> {
    let line = Line::new(signer, json.as_bytes())?;
    let mut out = vec![0; line.len()];
    line.copy_to(0, &mut out);
    Ok(out)
}

/// Emits a server record `json tag "\n" payload`, refusing anything that would not fit in one segment.
pub fn emit_record(signer: &Signer, json: &str, payload: &[u8]) -> Result<Vec<u8>> {
    if payload.len() > MAX_CHUNK {
        return Err(Error::PayloadTooLong(payload.len()));
    }
    let size = record_len(json.len(), payload.len());
    if size > MAX_SEGMENT {
        return Err(Error::SegmentTooLong(size));
    }
    let mut out = emit_line(signer, json)?;
    out.extend_from_slice(payload);
    Ok(out)
}

/// The device's `HI`: its whole config (minus secret) plus `id` and `a`.
#[derive(Debug, Clone, PartialEq)]
pub struct HiRepr {
    /// The chip id, a plain integer.
    pub id: u64,
    /// The fingerprint the device holds, if any.
    pub chk: Option<String>,
    /// The file numbers the device holds (entries that are not integers are dropped: they match nothing).
    pub files: Map<String, Value>,
    /// All fields as sent, in order.
    pub config: Map<String, Value>,
}

impl HiRepr {
    /// Parses an `HI` object; `id` must be a non-negative JSON integer (never a float).
    pub fn parse(config: Map<String, Value>) -> Result<Self> {
        match config.get("a") {
            Some(Value::String(a)) if a == "HI" => {}
            Some(Value::String(a)) => return Err(Error::NotHi(a.clone())),
            Some(_) => return Err(Error::NotHi(String::new())),
            None => return Err(Error::Missing("a")),
        }
        let id = match config.get("id") {
            None => return Err(Error::Missing("id")),
            Some(v) => v.as_u64().ok_or(Error::Field {
                field: "id",
                expected: "a non-negative integer",
            })?,
        };
        let chk = config.get("chk").and_then(Value::as_str).map(str::to_owned);
        let files = match config.get("files") {
            Some(Value::Object(files)) => files
                .iter()
                .filter(|(_, v)| v.is_u64())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => Map::new(),
        };
        Ok(HiRepr {
            id,
            chk,
            files,
            config,
        })
    }

    /// The number the device holds for `name`, if any.
    pub fn file_number(&self, name: &str) -> Option<u64> {
        self.files.get(name).and_then(Value::as_u64)
    }
}

/// The device's answer to a command: `{"s":"OK"}`, `{"s":"OK","lcsize":N}` or a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRepr {
    /// The status: `OK` or an error text.
    pub status: String,
    /// Size of the compiled `.lc`, after `cm`.
    pub lcsize: Option<u64>,
    /// The error text after a failed compile.
    pub err: Option<String>,
}

impl ReplyRepr {
    /// A plain `{"s":"OK"}`.
    pub fn ok() -> Self {
        ReplyRepr {
            status: "OK".into(),
            lcsize: None,
            err: None,
        }
    }

    /// Parses a reply object.
    pub fn parse(obj: &Map<String, Value>) -> Result<Self> {
        let status = match obj.get("s") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(Error::Field {
                    field: "s",
                    expected: "a string",
                })
            }
            None => return Err(Error::Missing("s")),
        };
        Ok(ReplyRepr {
            status,
            lcsize: obj.get("lcsize").and_then(Value::as_u64),
            err: obj.get("err").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// Whether the status is `OK`.
    pub fn is_ok(&self) -> bool {
        self.status == "OK"
    }

    /// The JSON the device signs, fields in the client's order.
    pub fn to_json(&self) -> String {
        let mut out = format!(r#"{{"s":{}"#, Value::from(self.status.as_str()));
        if let Some(n) = self.lcsize {
            out.push_str(&format!(r#","lcsize":{n}"#));
        }
        if let Some(e) = &self.err {
            out.push_str(&format!(r#","err":{}"#, Value::from(e.as_str())));
        }
        out.push('}');
        out
    }
}

/// A server-to-device command.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandRepr {
    /// `{"r":"OK!"}`: nothing to update.
    NoUpdate,
    /// `pu`: append `len` payload bytes to the device's buffer.
    Put {
        /// Payload length.
        len: u64,
    },
    /// `dl`: append, then write the buffer to `name`.
    Download {
        /// Target file.
        name: String,
        /// Payload length.
        len: u64,
    },
    /// `cm`: append, then compile the buffer as `name` into `<name minus .lua>.lc`.
    Compile {
        /// Source file name, ending in `.lua`.
        name: String,
        /// Payload length.
        len: u64,
    },
    /// `ls`: list the device's files.
    List,
    /// `mv`: rename `from` to `to` (deleting when they are equal).
    Rename {
        /// Existing name.
        from: String,
        /// New name.
        to: String,
    },
    /// `ul`: upload `len` bytes of `name` from `offset`.
    Upload {
        /// File to read.
        name: String,
        /// Start offset.
        offset: u64,
        /// Byte count.
        len: u64,
    },
    /// `restart`: the whole new config, `a` included.
    Restart(Map<String, Value>),
    /// Any other `a`, which the device acknowledges and ignores.
    Other(String),
}

impl CommandRepr {
    /// Parses a command object as the device sees it.
    pub fn parse(obj: &Map<String, Value>) -> Result<Self> {
        if obj.get("r").and_then(Value::as_str) == Some("OK!") {
            return Ok(CommandRepr::NoUpdate);
        }
        let a = str_field(obj, "a")?;
        let len = || u64_field(obj, "data");
        let name = || str_field(obj, "name").map(str::to_owned);
        Ok(match a {
            "pu" => CommandRepr::Put { len: len()? },
            "dl" => CommandRepr::Download {
                name: name()?,
                len: len()?,
            },
            "cm" => CommandRepr::Compile {
                name: name()?,
                len: len()?,
            },
            "ls" => CommandRepr::List,
            "mv" => CommandRepr::Rename {
                from: str_field(obj, "from")?.to_owned(),
                to: str_field(obj, "to")?.to_owned(),
            },
            "ul" => CommandRepr::Upload {
                name: name()?,
                offset: u64_field(obj, "offset")?,
                len: u64_field(obj, "len")?,
            },
            "restart" => CommandRepr::Restart(obj.clone()),
            other => CommandRepr::Other(other.to_owned()),
        })
    }

    /// The payload length this command announces.
    pub fn data_len(&self) -> u64 {
        match self {
            CommandRepr::Put { len }
            | CommandRepr::Download { len, .. }
            | CommandRepr::Compile { len, .. } => *len,
            _ => 0,
        }
    }

    /// The exact JSON the server signs, fields in the original server's order.
    pub fn to_json(&self) -> String {
        let s = |v: &str| Value::from(v).to_string();
        match self {
            CommandRepr::NoUpdate => NO_UPDATE_JSON.to_owned(),
            CommandRepr::Put { len } => format!(r#"{{"a":"pu","data":{len}}}"#),
            CommandRepr::Download { name, len } => {
                format!(r#"{{"a":"dl","data":{len},"name":{}}}"#, s(name))
            }
            CommandRepr::Compile { name, len } => {
                format!(r#"{{"a":"cm","data":{len},"name":{}}}"#, s(name))
            }
            CommandRepr::List => r#"{"a":"ls"}"#.to_owned(),
            CommandRepr::Rename { from, to } => {
                format!(r#"{{"a":"mv","from":{},"to":{}}}"#, s(from), s(to))
            }
            CommandRepr::Upload { name, offset, len } => format!(
                r#"{{"a":"ul","len":{len},"name":{},"offset":{offset}}}"#,
                s(name)
            ),
            CommandRepr::Restart(map) => Value::Object(map.clone()).to_string(),
            CommandRepr::Other(a) => format!(r#"{{"a":{}}}"#, s(a)),
        }
    }
}

fn str_field<'m>(obj: &'m Map<String, Value>, field: &'static str) -> Result<&'m str> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Error::Field {
            field,
            expected: "a string",
        }),
        None => Err(Error::Missing(field)),
    }
}

fn u64_field(obj: &Map<String, Value>, field: &'static str) -> Result<u64> {
    match obj.get(field) {
        Some(v) => v.as_u64().ok_or(Error::Field {
            field,
            expected: "a non-negative integer",
        }),
        None => Err(Error::Missing(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rota_luaota::md5;

    const SECRET: &[u8] = b"supersekrit";

    fn signer() -> Signer {
        Signer::new(SECRET)
    }

    fn hmac_md5(secret: &[u8], msg: &[u8]) -> [u8; 16] {
        Signer::new(secret).hmac(msg)
    }

    fn tag(secret: &[u8], json: &[u8]) -> [u8; TAG_LEN] {
        Signer::new(secret).tag(json)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn protocol_doc_vectors() {
        let vectors = [
            (r#"{"s":"OK"}"#, "dc9d160b6f0f42221afdb8925e7990f6"),
            (r#"{"r":"OK!"}"#, "feb3f0dae8577cb5c109f4cc2a4ef057"),
            (
                r#"{"a":"pu","data":1024}"#,
                "60ec65c0c6edcb80e6d7ac74b6073644",
            ),
            (
                r#"{"s":"OK","lcsize":82}"#,
                "509e4a9238bcd428c299cf44b933a009",
            ),
            (
                r#"{"a":"dl","data":5,"name":"tiny.txt"}"#,
                "3ce0da6750263d09c601f60e86987b5d",
            ),
            (
                r#"{"leave":0,"port":8266,"ssid":"YourSID","spwd":"YourSSIDpwd","server":"127.0.0.1","id":11223344,"a":"HI"}"#,
                "8af8c4117bde357adccf7fcf1e9e3162",
            ),
        ];
        for (json, mac) in vectors {
            assert_eq!(hex(&hmac_md5(SECRET, json.as_bytes())), mac, "{json}");
            assert_eq!(
                &tag(SECRET, json.as_bytes()),
                &mac.as_bytes()[26..],
                "{json}"
            );
        }
    }

    #[test]
    fn no_update_on_the_wire() {
        let wire = emit_record(&signer(), &CommandRepr::NoUpdate.to_json(), b"").unwrap();
        assert_eq!(wire, b"{\"r\":\"OK!\"}4ef057\n");
    }

    #[test]
    fn commands_emit_the_vector_json() {
        assert_eq!(
            CommandRepr::Put { len: 1024 }.to_json(),
            r#"{"a":"pu","data":1024}"#
        );
        let dl = CommandRepr::Download {
            name: "tiny.txt".into(),
            len: 5,
        };
        assert_eq!(dl.to_json(), r#"{"a":"dl","data":5,"name":"tiny.txt"}"#);
        let wire = emit_record(&signer(), &dl.to_json(), b"hello").unwrap();
        assert_eq!(
            wire,
            b"{\"a\":\"dl\",\"data\":5,\"name\":\"tiny.txt\"}987b5d\nhello"
        );
        let reply = ReplyRepr {
            lcsize: Some(82),
            ..ReplyRepr::ok()
        };
        assert_eq!(
            emit_line(&signer(), &reply.to_json()).unwrap(),
            b"{\"s\":\"OK\",\"lcsize\":82}33a009\n"
        );
    }

    #[test]
    fn both_ends_agree_on_the_protocol_vectors() {
        // Server records as the device's record layer (rota-luaota's, as its session uses it) reads
        // them: the same bytes, tags that verify, payloads as long as `data` says.
        let s = signer();
        let cases = [
            (CommandRepr::Put { len: 1024 }, vec![b'x'; 1024], "073644"),
            (
                CommandRepr::Download {
                    name: "tiny.txt".into(),
                    len: 5,
                },
                b"hello".to_vec(),
                "987b5d",
            ),
            (CommandRepr::NoUpdate, vec![], "4ef057"),
        ];
        for (command, payload, tag) in cases {
            let json = command.to_json();
            let wire = emit_record(&s, &json, &payload).unwrap();
            let mut expected = format!("{json}{tag}\n").into_bytes();
            expected.extend_from_slice(&payload);
            assert_eq!(wire, expected, "{json}");
            let device = rota_luaota::Record::parse_segment(&wire).unwrap();
            assert_eq!(device.verify(&s), Ok(()), "{json}");
            assert_eq!(device.payload_of(command.data_len()), Ok(&payload[..]));
        }
        // And the device's reply as the server reads it.
        let reply = br#"{"s":"OK"}"#;
        let line = rota_luaota::Line::new(&s, reply).unwrap();
        let mut wire = vec![0; line.len()];
        line.copy_to(0, &mut wire);
        assert_eq!(wire, b"{\"s\":\"OK\"}7990f6\n");
        let rec = Record::parse_line(&wire).unwrap();
        assert!(rec.verify(&s));
        assert!(ReplyRepr::parse(&rec.object().unwrap()).unwrap().is_ok());
    }

    #[test]
    fn commands_round_trip() {
        let mut restart = Map::new();
        restart.insert("a".into(), "restart".into());
        let cmds = [
            CommandRepr::NoUpdate,
            CommandRepr::Put { len: 1024 },
            CommandRepr::Download {
                name: "a \"b\".txt".into(),
                len: 3,
            },
            CommandRepr::Compile {
                name: "lib/x.lua".into(),
                len: 0,
            },
            CommandRepr::List,
            CommandRepr::Rename {
                from: "a".into(),
                to: "b".into(),
            },
            CommandRepr::Upload {
                name: "a".into(),
                offset: 2,
                len: 9,
            },
            CommandRepr::Restart(restart),
            CommandRepr::Other("zz".into()),
        ];
        for cmd in cmds {
            let obj = parse_object(cmd.to_json().as_bytes()).unwrap();
            assert_eq!(CommandRepr::parse(&obj).unwrap(), cmd);
        }
    }

    #[test]
    fn hi_vector_parses_with_integer_id() {
        let line = b"{\"leave\":0,\"port\":8266,\"ssid\":\"YourSID\",\"spwd\":\"YourSSIDpwd\",\"server\":\"127.0.0.1\",\"id\":11223344,\"a\":\"HI\"}9e3162\n";
        let rec = Record::parse_line(line).unwrap();
        assert_eq!(rec.tag(), b"9e3162");
        assert!(rec.payload().is_empty());
        assert!(rec.verify(&signer()));
        assert!(!rec.verify(&Signer::new(b"other")));
        let hi = HiRepr::parse(rec.object().unwrap()).unwrap();
        assert_eq!(hi.id, 11223344);
        assert_eq!(hi.chk, None);
        let keys: Vec<_> = hi.config.keys().map(String::as_str).collect();
        assert_eq!(keys, ["leave", "port", "ssid", "spwd", "server", "id", "a"]);
    }

    #[test]
    fn hi_errors_are_typed() {
        let hi = |json: &str| HiRepr::parse(parse_object(json.as_bytes()).unwrap());
        assert_eq!(hi(r#"{"a":"HI"}"#), Err(Error::Missing("id")));
        assert!(matches!(
            hi(r#"{"a":"HI","id":11223344.0}"#),
            Err(Error::Field { field: "id", .. })
        ));
        assert!(matches!(
            hi(r#"{"a":"HI","id":"11223344"}"#),
            Err(Error::Field { field: "id", .. })
        ));
        assert!(matches!(
            hi(r#"{"a":"HI","id":-1}"#),
            Err(Error::Field { field: "id", .. })
        ));
        assert_eq!(hi(r#"{"a":"pu","id":1}"#), Err(Error::NotHi("pu".into())));
        assert_eq!(hi(r#"{"id":1}"#), Err(Error::Missing("a")));
        let ok = hi(r#"{"a":"HI","id":7,"chk":"x","files":{"a":1,"b":"junk","c":2.5}}"#).unwrap();
        assert_eq!(ok.file_number("a"), Some(1));
        assert_eq!(ok.file_number("b"), None);
        assert_eq!(ok.file_number("c"), None);
    }

    #[test]
    fn framing_errors_are_typed() {
        assert_eq!(
            Record::parse_line(b"{\"a\":\"HI\"}"),
            Err(Error::NoLineFeed)
        );
        assert_eq!(Record::parse_line(b"{}abcdef\n"), Err(Error::TooShort(2)));
        assert_eq!(
            Record::parse_line(b"{\"s\":\"OK\"}7990F6\n"),
            Err(Error::TagSyntax)
        );
        assert_eq!(
            Record::parse_line(b"{\"s\":\"OK\"}7990f6\nx"),
            Err(Error::TrailingBytes(1))
        );
        let rec = Record::parse_line(b"not json!!7990f6\n").unwrap();
        assert!(matches!(rec.object(), Err(Error::Json(_))));
        let rec = Record::parse_line(b"[1,2,3,4,5]7990f6\n").unwrap();
        assert_eq!(rec.object(), Err(Error::NotObject));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_object(deep.as_bytes()), Err(Error::TooDeep));
        let ok = r#"{"a":{"b":[["[[[[[[[[[["]]}}"#;
        assert!(parse_object(ok.as_bytes()).is_ok());
        let escaped = r#"{"a":"\"[[[[[[[[[[[[["}"#;
        assert!(parse_object(escaped.as_bytes()).is_ok());
    }

    #[test]
    fn emit_refuses_what_the_client_cannot_read() {
        let big = vec![b'x'; MAX_CHUNK + 1];
        assert_eq!(
            emit_record(&signer(), r#"{"a":"pu","data":1025}"#, &big),
            Err(Error::PayloadTooLong(1025))
        );
        let json = format!(r#"{{"a":"restart","x":"{}"}}"#, "y".repeat(1500));
        assert!(matches!(
            emit_record(&signer(), &json, b""),
            Err(Error::SegmentTooLong(_))
        ));
        assert_eq!(emit_line(&signer(), "{}"), Err(Error::TooShort(2)));
        assert_eq!(
            emit_line(&signer(), "{\"a\":\"b\n\"}"),
            Err(Error::RawLineFeed)
        );
    }

    #[test]
    fn long_secrets_are_hashed_first() {
        let long = vec![b'k'; 200];
        let hashed = md5(&long);
        assert_eq!(hmac_md5(&long, b"msg"), hmac_md5(&hashed, b"msg"));
        assert_ne!(hmac_md5(&long, b"msg"), hmac_md5(&long[..64], b"msg"));
    }
}
