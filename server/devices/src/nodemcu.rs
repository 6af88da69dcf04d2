//! A NodeMCU luaOTA client, simulated as `luaota-protocol.md` describes it, for tests and benchmarks.
//!
//! Like the real client it:
//! - boots from `luaOTA/config.json`, read with ONE 1024-byte read (a longer config is read truncated and
//!   the device can no longer check in: [`SimError::Config`]);
//! - sends the config minus `secret`, plus `id` and `a:"HI"`, signed;
//! - needs a first valid record within 3.0 s of `connect()`, else runs its app; takes any first record
//!   holding `"r":"OK!"` as "no update" (even unsigned) and a badly signed first record as "no update";
//! - treats each read as exactly one record: a record split across two reads, two records in one read, or
//!   a segment over 1460 bytes is an error (the real client would fail on it);
//! - allows 30 s for the session after the first command, raises an error on any later bad tag;
//! - answers `pu`, `dl`, `cm` (compiling with the real Lua 5.1 compiler), `ls`, `mv`, `ul`, stores the
//!   `restart` config (minus `a`, plus its secret) and "reboots";
//! - raises `filename invalid` (and reboots: [`SimError::FilenameInvalid`]) when `dl` or `cm` names a
//!   file over 31 bytes, as NodeMCU's `file.open` does.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use rota_server::luac;
use rota_server::v1::{self, CommandRepr, Record, ReplyRepr, Signer};

/// Where the client keeps its config.
pub const CONFIG_FILE: &str = "luaOTA/config.json";
/// How much of the config the client reads at boot.
pub const CONFIG_READ: usize = 1024;
/// The client's window from `connect()` to the first valid record.
pub const FIRST_RECORD_WINDOW: Duration = Duration::from_millis(3000);
/// The client's window for the whole session after the first command.
pub const SESSION_WINDOW: Duration = Duration::from_secs(30);

/// Something the real client would fail on (it raises an error and reboots).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A record's payload did not all arrive in the read that carried its header.
    #[error("record split across reads: data says {declared} bytes, the segment holds {got}")]
    Split {
        /// The `data` field.
        declared: u64,
        /// Payload bytes present.
        got: usize,
    },
    /// More bytes than one record in one read.
    #[error("{0} bytes after the record in the same segment")]
    Trailing(usize),
    /// A segment the real client's buffer could not hold.
    #[error("segment of {0} bytes exceeds {max}", max = v1::MAX_SEGMENT)]
    Oversized(usize),
    /// A malformed record after the first.
    #[error("bad record: {0}")]
    Record(#[from] v1::Error),
    /// A bad tag on a record after the first.
    #[error("bad tag on a command after the first")]
    BadTag,
    /// The session outlived the 30 s window.
    #[error("session exceeded {SESSION_WINDOW:?}")]
    SessionTimeout,
    /// The server closed the connection mid-session.
    #[error("server closed the connection mid-session")]
    Closed,
    /// `dl` or `cm` named a file over [`rota_wire::MAX_NAME`] bytes: NodeMCU's `file.open` raises
    /// `filename invalid` and the device reboots (at every boot, as the server sends it again).
    #[error("file.open raised `filename invalid` for `{0}` (over {max} bytes)", max = rota_wire::MAX_NAME)]
    FilenameInvalid(String),
    /// The stored config cannot be read back at boot: the device is bricked.
    #[error("config.json unreadable at boot: {0}")]
    Config(String),
    /// Transport error.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// Why the device started its app without an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppReason {
    /// No valid first record within 3.0 s of `connect()`.
    FirstRecordTimeout,
    /// The server closed before the first record.
    ClosedEarly,
    /// The first record was malformed or badly signed.
    BadFirstRecord,
}

/// How a check-in ended, from the device's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `OK!` received: the app starts.
    NoUpdate,
    /// A `restart` was stored: the device reboots into the new config.
    Restarted,
    /// The app started for another reason.
    AppStarted(AppReason),
}

/// One record the device received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its JSON (lossy UTF-8).
    pub json: String,
    /// Whether its tag verified with the device's secret.
    pub tag_ok: bool,
    /// Its payload length.
    pub payload: usize,
}

/// The result of one check-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckIn {
    /// How it ended.
    pub outcome: Outcome,
    /// Every record received, in order.
    pub received: Vec<Received>,
    /// Time from `connect()` to the first record, if one came.
    pub first_record_after: Option<Duration>,
    /// Bytes the device wrote.
    pub bytes_sent: u64,
    /// Bytes the device read.
    pub bytes_received: u64,
}

/// A simulated device: its chip id and its flash file system.
#[derive(Debug, Clone)]
pub struct Device {
    /// The chip id.
    pub id: u64,
    /// The file system, `luaOTA/config.json` included.
    pub fs: BTreeMap<String, Vec<u8>>,
    /// The last source received by `cm` for each `.lua` name (the device itself keeps only the `.lc`).
    pub sources: BTreeMap<String, Vec<u8>>,
    /// The first-record window (3.0 s on a real device).
    pub first_record_window: Duration,
    buffer: Vec<u8>,
}

impl Device {
    /// A fresh device configured for `server:port` with `secret` (WiFi fields as in the protocol doc).
    pub fn new(id: u64, secret: &str, server: &str, port: u16) -> Self {
        let config = serde_json::json!({
            "leave": 0, "port": port, "ssid": "YourSID", "spwd": "YourSSIDpwd",
            "server": server, "secret": secret,
        });
        let mut fs = BTreeMap::new();
        fs.insert(CONFIG_FILE.to_owned(), config.to_string().into_bytes());
        Device {
            id,
            fs,
            sources: BTreeMap::new(),
            first_record_window: FIRST_RECORD_WINDOW,
            buffer: Vec::new(),
        }
    }

    /// The config as the client reads it at boot (one 1024-byte read), and the secret taken out of it.
    pub fn boot_config(&self) -> Result<(Map<String, Value>, String), SimError> {
        let bytes = self
            .fs
            .get(CONFIG_FILE)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let read = &bytes[..bytes.len().min(CONFIG_READ)];
        let mut config = match serde_json::from_slice::<Value>(read) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(SimError::Config("not an object".into())),
            Err(e) => return Err(SimError::Config(e.to_string())),
        };
        let secret = match config.shift_remove("secret") {
            Some(Value::String(s)) => s,
            _ => return Err(SimError::Config("no secret".into())),
        };
        Ok((config, secret))
    }

    /// The HI line this device sends.
    pub fn hi_line(&self) -> Result<Vec<u8>, SimError> {
        let (mut config, secret) = self.boot_config()?;
        config.insert("id".into(), self.id.into());
        config.insert("a".into(), "HI".into());
        Ok(v1::emit_line(
            &Signer::new(secret.as_bytes()),
            &Value::Object(config).to_string(),
        )?)
    }

    /// Connects to `addr` and checks in; the 3.0 s window starts before `connect()`.
    pub async fn check_in_tcp(&mut self, addr: SocketAddr) -> Result<CheckIn, SimError> {
        let start = Instant::now();
        let deadline = start + self.first_record_window;
        let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Ok(CheckIn::app(AppReason::FirstRecordTimeout)),
            Ok(stream) => stream?,
        };
        stream.set_nodelay(true)?;
        self.check_in(stream, start).await
    }

    /// Checks in over `io`, connected at `connected_at`.
    pub async fn check_in<S>(
        &mut self,
        mut io: S,
        connected_at: Instant,
    ) -> Result<CheckIn, SimError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (_, secret) = self.boot_config()?;
        let secret = secret.into_bytes();
        let signer = Signer::new(&secret);
        let hi = self.hi_line()?;
        let mut report = CheckIn::app(AppReason::FirstRecordTimeout);
        io.write_all(&hi).await?;
        report.bytes_sent += hi.len() as u64;
        self.buffer.clear();

        let first_deadline = connected_at + self.first_record_window;
        let segment = match timeout_at(first_deadline, read_segment(&mut io)).await {
            Err(_) => return Ok(report),
            Ok(Err(SimError::Io(_))) | Ok(Ok(None)) => {
                report.outcome = Outcome::AppStarted(AppReason::ClosedEarly);
                return Ok(report);
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Some(segment))) => segment,
        };
        report.first_record_after = Some(connected_at.elapsed());
        report.bytes_received += segment.len() as u64;
        let parsed = Record::parse_segment(&segment);
        if let Ok(record) = parsed {
            report.received.push(Received::of(&record, &signer));
        }
        // As the client: `"r":"OK!"` anywhere before the tag means no update, signed or not.
        let lf = segment
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(segment.len());
        if contains(&segment[..lf.saturating_sub(v1::TAG_LEN)], br#""r":"OK!""#) {
            report.outcome = Outcome::NoUpdate;
            return Ok(report);
        }
        let first = match parsed {
            Ok(record) if record.verify(&signer) => command(&record)?,
            _ => {
                report.outcome = Outcome::AppStarted(AppReason::BadFirstRecord);
                return Ok(report);
            }
        };

        let session_deadline = Instant::now() + SESSION_WINDOW;
        let mut next = first;
        loop {
            match self.execute(next.0, next.1, &secret, &signer)? {
                Action::Reply(bytes) => {
                    io.write_all(&bytes).await?;
                    report.bytes_sent += bytes.len() as u64;
                }
                Action::Restart => {
                    report.outcome = Outcome::Restarted;
                    return Ok(report);
                }
            }
            let segment = match timeout_at(session_deadline, read_segment(&mut io)).await {
                Err(_) => return Err(SimError::SessionTimeout),
                Ok(Ok(None)) => return Err(SimError::Closed),
                Ok(result) => result?.unwrap_or_default(),
            };
            report.bytes_received += segment.len() as u64;
            let record = Record::parse_segment(&segment)?;
            report.received.push(Received::of(&record, &signer));
            if !record.verify(&signer) {
                return Err(SimError::BadTag);
            }
            next = command(&record)?;
        }
    }

    /// Carries out one command with its payload; an error is one the real client raises (it reboots).
    fn execute(
        &mut self,
        command: CommandRepr,
        payload: Vec<u8>,
        secret: &[u8],
        signer: &Signer,
    ) -> Result<Action, SimError> {
        let ok = ReplyRepr::ok();
        let fail = |status: &str, err: Option<String>| ReplyRepr {
            status: status.into(),
            lcsize: None,
            err,
        };
        let reply = match command {
            CommandRepr::Put { .. } => {
                self.buffer.extend_from_slice(&payload);
                ok.to_json()
            }
            CommandRepr::Download { name, .. } => {
                check_name(&name)?;
                self.buffer.extend_from_slice(&payload);
                self.fs.insert(name, std::mem::take(&mut self.buffer));
                ok.to_json()
            }
            CommandRepr::Compile { name, .. } => {
                check_name(&name)?;
                self.buffer.extend_from_slice(&payload);
                let source = std::mem::take(&mut self.buffer);
                match luac::compile(&name, &source) {
                    Ok(code) => {
                        let stem = name.strip_suffix(".lua").unwrap_or(&name);
                        let reply = ReplyRepr {
                            lcsize: Some(code.len() as u64),
                            ..ok
                        };
                        self.fs.insert(format!("{stem}.lc"), code);
                        self.sources.insert(name, source);
                        reply.to_json()
                    }
                    Err(e) => fail("compile fail", Some(e.message)).to_json(),
                }
            }
            CommandRepr::List => {
                let mut map = Map::new();
                map.insert("s".into(), "OK".into());
                for (name, data) in &self.fs {
                    map.insert(name.clone(), data.len().into());
                }
                Value::Object(map).to_string()
            }
            CommandRepr::Rename { from, to } => match self.fs.remove(&from) {
                // As the client: a missing `from` is not an error; `from == to` deletes it and fails.
                None => ok.to_json(),
                Some(_) if from == to => fail("Rename failed", None).to_json(),
                Some(data) => {
                    self.fs.insert(to, data);
                    ok.to_json()
                }
            },
            CommandRepr::Upload { name, offset, len } => {
                let data = self.fs.get(&name).map(Vec::as_slice).unwrap_or_default();
                let start = data
                    .len()
                    .min(usize::try_from(offset).unwrap_or(usize::MAX));
                let end = data
                    .len()
                    .min(start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)));
                let mut out = line(signer, &ok.to_json());
                out.extend_from_slice(&data[start..end]);
                return Ok(Action::Reply(out));
            }
            CommandRepr::Restart(mut config) => {
                config.shift_remove("a");
                config.insert(
                    "secret".into(),
                    String::from_utf8_lossy(secret).into_owned().into(),
                );
                // `file.writeline(json.encode(cmd))`: the JSON and a line feed.
                let mut bytes = Value::Object(config).to_string().into_bytes();
                bytes.push(b'\n');
                self.fs.insert(CONFIG_FILE.to_owned(), bytes);
                return Ok(Action::Restart);
            }
            CommandRepr::NoUpdate | CommandRepr::Other(_) => ok.to_json(),
        };
        Ok(Action::Reply(line(signer, &reply)))
    }
}

/// `file.open`'s name check: NodeMCU raises `filename invalid` above 31 bytes.
fn check_name(name: &str) -> Result<(), SimError> {
    if name.len() > rota_wire::MAX_NAME {
        return Err(SimError::FilenameInvalid(name.to_owned()));
    }
    Ok(())
}

/// What the device does after a command.
enum Action {
    Reply(Vec<u8>),
    Restart,
}

impl CheckIn {
    fn app(reason: AppReason) -> Self {
        CheckIn {
            outcome: Outcome::AppStarted(reason),
            received: Vec::new(),
            first_record_after: None,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }
}

impl Received {
    fn of(record: &Record<'_>, signer: &Signer) -> Self {
        Received {
            json: String::from_utf8_lossy(record.json()).into_owned(),
            tag_ok: record.verify(signer),
            payload: record.payload().len(),
        }
    }
}

fn line(signer: &Signer, json: &str) -> Vec<u8> {
    // Replies are short fixed JSON objects: always at least 10 bytes, never a raw line feed.
    v1::emit_line(signer, json).unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One read = one segment = one record; `None` when the peer closed.
async fn read_segment<S: AsyncRead + Unpin>(io: &mut S) -> Result<Option<Vec<u8>>, SimError> {
    let mut buf = vec![0u8; 4 * v1::MAX_SEGMENT];
    let n = io.read(&mut buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if n > v1::MAX_SEGMENT {
        return Err(SimError::Oversized(n));
    }
    buf.truncate(n);
    Ok(Some(buf))
}

/// The command of a segment, its payload checked against `data` (a short payload is a split record).
///
/// As on the client, only `pu`, `dl` and `cm` carry a payload; bytes after other commands are ignored.
fn command(record: &Record<'_>) -> Result<(CommandRepr, Vec<u8>), SimError> {
    let command = CommandRepr::parse(&record.object()?)?;
    if !matches!(
        command,
        CommandRepr::Put { .. } | CommandRepr::Download { .. } | CommandRepr::Compile { .. }
    ) {
        return Ok((command, Vec::new()));
    }
    let declared = command.data_len();
    let got = record.payload().len();
    if (got as u64) < declared {
        return Err(SimError::Split { declared, got });
    }
    if got as u64 > declared {
        return Err(SimError::Trailing(got - declared as usize));
    }
    Ok((command, record.payload().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    const SECRET: &str = "supersekrit";

    fn record(json: &str, payload: &[u8]) -> Vec<u8> {
        v1::emit_record(&signer(), json, payload).unwrap()
    }

    fn signer() -> Signer {
        Signer::new(SECRET.as_bytes())
    }

    /// Runs `server` against a fresh device over an in-memory pipe.
    async fn run<F, Fut>(device: &mut Device, server: F) -> Result<CheckIn, SimError>
    where
        F: FnOnce(DuplexStream) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (a, b) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(server(b));
        let result = device.check_in(a, Instant::now()).await;
        task.abort();
        result
    }

    async fn read_line(io: &mut DuplexStream) -> Vec<u8> {
        let mut buf = vec![0; 4096];
        let n = io.read(&mut buf).await.unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn hi_matches_the_protocol_vector() {
        let device = Device::new(11223344, SECRET, "127.0.0.1", 8266);
        assert_eq!(
            device.hi_line().unwrap(),
            b"{\"leave\":0,\"port\":8266,\"ssid\":\"YourSID\",\"spwd\":\"YourSSIDpwd\",\"server\":\"127.0.0.1\",\"id\":11223344,\"a\":\"HI\"}9e3162\n"
        );
    }

    #[tokio::test]
    async fn unsigned_ok_means_no_update_as_on_the_real_client() {
        let mut device = Device::new(1, SECRET, "h", 1);
        let check = run(&mut device, |mut io| async move {
            read_line(&mut io).await;
            io.write_all(b"{\"r\":\"OK!\"}000000\n").await.unwrap();
        })
        .await
        .unwrap();
        assert_eq!(check.outcome, Outcome::NoUpdate);
        assert!(!check.received[0].tag_ok);
    }

    #[tokio::test]
    async fn bad_first_tag_starts_the_app_later_bad_tag_is_an_error() {
        let mut device = Device::new(1, SECRET, "h", 1);
        let check = run(&mut device, |mut io| async move {
            read_line(&mut io).await;
            io.write_all(b"{\"a\":\"pu\",\"data\":1}000000\nx")
                .await
                .unwrap();
        })
        .await
        .unwrap();
        assert_eq!(
            check.outcome,
            Outcome::AppStarted(AppReason::BadFirstRecord)
        );
        let err = run(&mut device, |mut io| async move {
            read_line(&mut io).await;
            io.write_all(&record(r#"{"a":"pu","data":1}"#, b"x"))
                .await
                .unwrap();
            read_line(&mut io).await;
            io.write_all(b"{\"a\":\"pu\",\"data\":1}000000\nx")
                .await
                .unwrap();
        })
        .await
        .unwrap_err();
        assert!(matches!(err, SimError::BadTag), "{err:?}");
    }

    #[tokio::test]
    async fn split_and_coalesced_records_are_rejected() {
        let mut device = Device::new(1, SECRET, "h", 1);
        let err = run(&mut device, |mut io| async move {
            read_line(&mut io).await;
            let rec = record(r#"{"a":"dl","data":5,"name":"tiny.txt"}"#, b"hello");
            let (head, tail) = rec.split_at(rec.len() - 2);
            io.write_all(head).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            io.write_all(tail).await.unwrap();
        })
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                SimError::Split {
                    declared: 5,
                    got: 3
                }
            ),
            "{err:?}"
        );
        let err = run(&mut device, |mut io| async move {
            read_line(&mut io).await;
            let mut two = record(r#"{"a":"pu","data":1}"#, b"a");
            two.extend(record(r#"{"a":"pu","data":1}"#, b"b"));
            io.write_all(&two).await.unwrap();
        })
        .await
        .unwrap_err();
        assert!(matches!(err, SimError::Trailing(_)), "{err:?}");
        let err = run(&mut device, |mut io| async move {
            read_line(&mut io).await;
            io.write_all(&[b'{'; 1500]).await.unwrap();
        })
        .await
        .unwrap_err();
        assert!(matches!(err, SimError::Oversized(1500)), "{err:?}");
    }

    #[tokio::test]
    async fn names_over_31_bytes_raise_filename_invalid() {
        let name = "a_file_name_of_32_bytes_exactly!";
        assert_eq!(name.len(), 32);
        let mut device = Device::new(1, SECRET, "h", 1);
        let before = device.fs.clone();
        let json = format!(r#"{{"a":"dl","data":1,"name":"{name}"}}"#);
        let err = run(&mut device, move |mut io| async move {
            read_line(&mut io).await;
            io.write_all(&record(&json, b"x")).await.unwrap();
        })
        .await
        .unwrap_err();
        assert!(
            matches!(&err, SimError::FilenameInvalid(n) if n == name),
            "{err:?}"
        );
        assert_eq!(device.fs, before);
        // 31 bytes is fine.
        let json = format!(r#"{{"a":"dl","data":1,"name":"{}"}}"#, &name[..31]);
        let check = run(&mut device, move |mut io| async move {
            read_line(&mut io).await;
            io.write_all(&record(&json, b"x")).await.unwrap();
            read_line(&mut io).await;
        })
        .await;
        assert!(
            !matches!(check, Err(SimError::FilenameInvalid(_))),
            "{check:?}"
        );
        assert_eq!(device.fs[&name[..31]], b"x");
    }

    #[tokio::test]
    async fn silent_server_misses_the_first_record_window() {
        let mut device = Device::new(1, SECRET, "h", 1);
        device.first_record_window = Duration::from_millis(100);
        let check = run(&mut device, |mut io| async move {
            read_line(&mut io).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await
        .unwrap();
        assert_eq!(
            check.outcome,
            Outcome::AppStarted(AppReason::FirstRecordTimeout)
        );
    }

    #[tokio::test]
    async fn file_commands_and_restart() {
        let mut device = Device::new(7, SECRET, "h", 1);
        device.fs.insert("old.txt".into(), b"0123456789".to_vec());
        device.fs.insert("junk".into(), b"j".to_vec());
        let check = run(&mut device, |mut io| async move {
            read_line(&mut io).await;
            let script: Vec<(Vec<u8>, &[u8])> = vec![
                (record(r#"{"a":"pu","data":2}"#, b"he"), b"{\"s\":\"OK\"}"),
                (
                    record(r#"{"a":"dl","data":3,"name":"f.txt"}"#, b"llo"),
                    b"{\"s\":\"OK\"}",
                ),
                (
                    record(r#"{"a":"cm","data":9,"name":"m.lua"}"#, b"return 1("),
                    b"{\"s\":\"compile fail\",\"err\":\"m.lua:1:",
                ),
                (
                    record(r#"{"a":"cm","data":8,"name":"m.lua"}"#, b"return 1"),
                    b"{\"s\":\"OK\",\"lcsize\":",
                ),
                (
                    record(r#"{"a":"ul","len":4,"name":"old.txt","offset":3}"#, b""),
                    b"{\"s\":\"OK\"}",
                ),
                (
                    record(r#"{"a":"mv","from":"old.txt","to":"new.txt"}"#, b""),
                    b"{\"s\":\"OK\"}",
                ),
                (
                    record(r#"{"a":"mv","from":"junk","to":"junk"}"#, b""),
                    b"{\"s\":\"Rename failed\"}",
                ),
                (
                    record(r#"{"a":"mv","from":"absent","to":"x"}"#, b""),
                    b"{\"s\":\"OK\"}",
                ),
                (
                    record(r#"{"a":"ls"}"#, b""),
                    b"{\"s\":\"OK\",\"f.txt\":5,\"luaOTA/config.json\":",
                ),
                (record(r#"{"a":"zz"}"#, b""), b"{\"s\":\"OK\"}"),
            ];
            for (rec, expect) in script {
                io.write_all(&rec).await.unwrap();
                let reply = read_line(&mut io).await;
                assert!(
                    reply.starts_with(expect),
                    "{}",
                    String::from_utf8_lossy(&reply)
                );
                let lf = reply.iter().position(|&b| b == b'\n').unwrap();
                assert!(signer().verify(&reply[..lf - 6], &reply[lf - 6..lf]));
                if expect == b"{\"s\":\"OK\"}" && rec.starts_with(b"{\"a\":\"ul\"") {
                    assert_eq!(&reply[lf + 1..], b"3456");
                }
            }
            let restart = r#"{"leave":0,"a":"restart","chk":"c","files":{"f.txt":1}}"#;
            io.write_all(&record(restart, b"")).await.unwrap();
        })
        .await
        .unwrap();
        assert_eq!(check.outcome, Outcome::Restarted);
        assert_eq!(device.fs["f.txt"], b"hello");
        assert_eq!(device.sources["m.lua"], b"return 1");
        assert_eq!(&device.fs["m.lc"][..4], b"\x1bLua");
        assert!(!device.fs.contains_key("junk") && !device.fs.contains_key("old.txt"));
        assert_eq!(device.fs["new.txt"], b"0123456789");
        let (config, secret) = device.boot_config().unwrap();
        assert_eq!(secret, SECRET);
        assert_eq!(
            Value::Object(config).to_string(),
            r#"{"leave":0,"chk":"c","files":{"f.txt":1}}"#
        );
    }

    #[test]
    fn a_config_over_1024_bytes_bricks_the_device() {
        let mut device = Device::new(1, SECRET, "h", 1);
        let long = serde_json::json!({"secret": SECRET, "pad": "x".repeat(1100)});
        device
            .fs
            .insert(CONFIG_FILE.into(), long.to_string().into_bytes());
        assert!(matches!(device.boot_config(), Err(SimError::Config(_))));
    }
}
