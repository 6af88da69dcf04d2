//! Test doubles: an in-memory file store with the staging semantics of rota-store, a small planner, and
//! an in-memory link that runs a device and a server session against each other.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};

#[allow(unused_imports)] // `Staged` is not used by every test file.
pub use rota_wire::mem::{MemStore, Staged};
use rota_wire::msg::{state_digest, FileInfo, Hello, Name, PhasePeak};
use rota_wire::server::{self, Event, Outgoing, ServerSession, Step};
use rota_wire::{sha256, DeviceSession, Error, Header, Poll, ServerMsg, HEADER_LEN, MAX_FRAME};

pub const SECRET: &[u8] = b"supersekrit";
pub const DEVICE: u32 = 11223344;

/// The check-in a test device makes: its store's content, a fixed heap report, and config version 0.
pub trait TestHello {
    /// The Hello with device nonce `nonce`.
    fn hello(&self, nonce: u32) -> Hello<'_>;
}

impl TestHello for MemStore {
    fn hello(&self, nonce: u32) -> Hello<'_> {
        let mut hello = self.check_in(DEVICE, nonce);
        hello.config = Default::default();
        for phase in 0..3 {
            let report = PhasePeak {
                heap: 1000 * (phase + 1),
                stack: 512,
            };
            hello.heap.phases.push(report).unwrap();
        }
        hello
    }
}

/// The version the test planner gives a file of digest `digest`.
pub fn version_of(digest: &[u8; 32]) -> u32 {
    digest[0].into()
}

/// The state digest of a device holding exactly `repo`'s files.
pub fn repo_state(repo: &Repo) -> [u8; 16] {
    let digests: Vec<[u8; 32]> = repo.values().map(|d| sha256(d)).collect();
    let mut files: Vec<FileInfo<'_>> = repo
        .iter()
        .zip(&digests)
        .map(|((name, data), digest)| FileInfo {
            name: Name::new(name).unwrap(),
            size: data.len() as u32,
            version: version_of(digest),
            digest: *digest,
        })
        .collect();
    state_digest(&mut files)
}

/// The server's reference files.
pub type Repo = BTreeMap<Vec<u8>, Vec<u8>>;

/// A repository of `(name, content)` pairs.
pub fn repo(files: &[(&str, Vec<u8>)]) -> Repo {
    files
        .iter()
        .map(|(n, d)| (n.as_bytes().to_vec(), d.clone()))
        .collect()
}

/// `n` bytes of a recognisable pattern.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The same decision rule as rota-server, for a map of files: send what differs, resume staged files
/// with the same digest, drop other staged files, delete device files the repository lacks.
pub fn plan<'a>(repo: &'a Repo, hello: &Hello<'_>, files: &[FileInfo<'_>]) -> Vec<Step<'a>> {
    let mut steps = Vec::new();
    for s in &hello.staged {
        let wanted = repo
            .get(s.name.as_bytes())
            .is_some_and(|d| sha256(d) == s.digest);
        if !wanted {
            let name = repo.keys().find(|k| k.as_slice() == s.name.as_bytes());
            // Names must outlive the plan: only repository names can be borrowed; others are leaked.
            let name: &'a [u8] = match name {
                Some(n) => n,
                None => Box::leak(s.name.as_bytes().to_vec().into_boxed_slice()),
            };
            steps.push(Step::Drop(name));
        }
    }
    for f in files {
        if !repo.contains_key(f.name.as_bytes()) {
            let name: &'a [u8] = Box::leak(f.name.as_bytes().to_vec().into_boxed_slice());
            steps.push(Step::Delete(name));
        }
    }
    for (name, data) in repo {
        let digest = sha256(data);
        let current = files
            .iter()
            .any(|f| f.name.as_bytes() == name.as_slice() && f.digest == digest);
        if !current {
            steps.push(Step::Send(Outgoing {
                name,
                version: version_of(&digest),
                digest,
                data,
            }));
        }
    }
    if !steps.is_empty() {
        steps.push(Step::Commit(None));
    }
    steps
}

/// Takes one whole frame off the front of `buf`, if there is one.
pub fn take_frame(buf: &mut VecDeque<u8>) -> Option<Result<Vec<u8>, Error>> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    let head: Vec<u8> = buf.iter().take(HEADER_LEN).copied().collect();
    let header = match Header::parse(&head) {
        Ok(h) => h,
        Err(e) => return Some(Err(e)),
    };
    if buf.len() < header.frame_len() {
        return None;
    }
    Some(Ok(buf.drain(..header.frame_len()).collect()))
}

/// What a man in the middle does to each frame: `(direction is down, frame index in that direction,
/// frame)`; returns the bytes to pass on, or `None` to cut the connection.
pub type Mitm<'m> = dyn FnMut(bool, usize, &mut Vec<u8>) -> bool + 'm;

/// How one check-in went.
#[derive(Debug)]
pub struct Run {
    /// The device's last poll result.
    pub device: Result<Poll, Error>,
    /// The server's result: `Ok(true)` once committed, `Ok(false)` for NoUpdate, or its error; `None`
    /// when the connection was cut first.
    pub server: Option<Result<bool, Error>>,
    /// Bytes device -> server, server -> device.
    pub up: usize,
    pub down: usize,
    /// Frames each way.
    pub up_frames: usize,
    pub down_frames: usize,
    /// The server's events.
    pub ready: Vec<u32>,
    pub acks: Vec<u32>,
    pub data_bytes: usize,
    pub uploaded: Vec<u8>,
    /// Direction changes: device->server then server->device counts one round trip.
    pub round_trips: usize,
    /// The kind byte of every frame that went up, and down (after the man in the middle).
    pub up_kinds: Vec<u8>,
    pub down_kinds: Vec<u8>,
}

/// Runs one check-in of `store` (a new boot) against `repo` over an in-memory link.
pub fn check_in(store: &mut MemStore, repo: &Repo, mitm: &mut Mitm<'_>) -> Run {
    check_in_with(store, repo, mitm, plan, SECRET, SECRET)
}

/// A planner: the steps for `repo`, given the Hello and the device's committed files.
pub trait Planner<'r>: FnOnce(&'r Repo, &Hello<'_>, &[FileInfo<'_>]) -> Vec<Step<'r>> {}
impl<'r, F: FnOnce(&'r Repo, &Hello<'_>, &[FileInfo<'_>]) -> Vec<Step<'r>>> Planner<'r> for F {}

/// The link: both byte queues, the man in the middle, the counters.
struct Link<'l, 'm> {
    mitm: &'l mut Mitm<'m>,
    up: VecDeque<u8>,
    down: VecDeque<u8>,
    cut: bool,
    last_up: bool,
    down_index: usize,
}

impl Link<'_, '_> {
    fn send(&mut self, is_down: bool, frame: &[u8], run: &mut Run) {
        if self.cut {
            return;
        }
        let mut frame = frame.to_vec();
        let index = if is_down {
            self.down_index
        } else {
            run.up_frames
        };
        if !(self.mitm)(is_down, index, &mut frame) {
            self.cut = true;
            return;
        }
        let kind = frame.get(1).copied().unwrap_or_default();
        if is_down {
            run.down_kinds.push(kind);
            self.down_index += 1;
            run.down += frame.len();
            run.down_frames += 1;
            self.down.extend(frame);
            self.last_up = false;
        } else {
            if !self.last_up {
                run.round_trips += 1;
                self.last_up = true;
            }
            run.up_kinds.push(kind);
            run.up += frame.len();
            run.up_frames += 1;
            self.up.extend(frame);
        }
    }
}

/// [`check_in`] with a custom planner and the secrets each side uses.
pub fn check_in_with<'r>(
    store: &mut MemStore,
    repo: &'r Repo,
    mitm: &mut Mitm<'_>,
    planner: impl Planner<'r>,
    device_secret: &[u8],
    server_secret: &[u8],
) -> Run {
    check_in_as(
        store,
        repo,
        mitm,
        planner,
        rota_wire::Device::plain(device_secret, rota_wire::Link::Tcp),
        server_secret,
    )
}

/// [`check_in_with`] for a device described by `device`.
pub fn check_in_as<'r>(
    store: &mut MemStore,
    repo: &'r Repo,
    mitm: &mut Mitm<'_>,
    planner: impl Planner<'r>,
    device: rota_wire::Device<'_>,
    server_secret: &[u8],
) -> Run {
    let nonce = store.reboot();
    let mut run = Run {
        device: Ok(Poll::Receive),
        server: None,
        up: 0,
        down: 0,
        up_frames: 0,
        down_frames: 0,
        ready: Vec::new(),
        acks: Vec::new(),
        data_bytes: 0,
        uploaded: Vec::new(),
        round_trips: 0,
        up_kinds: Vec::new(),
        down_kinds: Vec::new(),
    };
    let mut link = Link {
        mitm,
        up: VecDeque::new(),
        down: VecDeque::new(),
        cut: false,
        last_up: false,
        down_index: 0,
    };
    let mut out = vec![0u8; MAX_FRAME];

    // Device: Hello.
    let flags = if device.keys.is_empty() {
        0
    } else {
        rota_wire::msg::flags::SIGNED
    };
    let mut device = DeviceSession::for_device(device);
    {
        let mut hello = store.hello(nonce);
        hello.flags = flags;
        let n = device.hello(&hello, &mut out).unwrap();
        link.send(false, &out[..n], &mut run);
    }

    // Server: the Hello.
    let hello_frame = match take_frame(&mut link.up) {
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            run.server = Some(Err(e));
            return run;
        }
        None => return run,
    };
    let hello = match server::open_hello(&hello_frame, server_secret) {
        Ok(h) => h,
        Err(e) => {
            run.server = Some(Err(e));
            return run;
        }
    };
    let mut planner = Some(planner);
    let steps: std::cell::OnceCell<Vec<Step<'r>>> = std::cell::OnceCell::new();
    let mut sout = vec![0u8; MAX_FRAME * 2];
    let mut session = None;
    if hello.state == repo_state(repo) && hello.staged.is_empty() {
        let n = server::no_update(server_secret, &hello, &mut sout).unwrap();
        link.send(true, &sout[..n], &mut run);
        run.server = Some(Ok(false));
    } else {
        let (s, n) = ServerSession::welcome(server_secret, &hello, [7; 16], &mut sout).unwrap();
        // Welcome and List: two frames in one write.
        let welcome = Header::parse(&sout).unwrap().frame_len();
        link.send(true, &sout[..welcome], &mut run);
        link.send(true, &sout[welcome..n], &mut run);
        session = Some(s);
    }
    let hello = hello_frame.clone();
    let mut upload = Vec::new();

    for _ in 0..100_000 {
        let mut progress = false;
        // Server transmits what it may.
        if let Some(s) = session.as_mut() {
            while run.server.is_none() {
                match s.poll_transmit(&mut sout) {
                    Ok(Some(n)) => {
                        let frame = rota_wire::Frame::new_checked(&sout[..n]).unwrap();
                        if let Ok(ServerMsg::Data(d)) =
                            ServerMsg::decode(frame.kind(), frame.payload())
                        {
                            run.data_bytes += d.bytes.0.len();
                        }
                        link.send(true, &sout[..n], &mut run);
                        progress = true;
                    }
                    Ok(None) => break,
                    Err(e) => run.server = Some(Err(e)),
                }
            }
        }
        // Device consumes.
        loop {
            let space = device.rx_buffer();
            let n = space.len().min(link.down.len());
            for (slot, b) in space.iter_mut().zip(link.down.drain(..n)) {
                *slot = b;
            }
            device.rx_commit(n);
            let polled = device.poll(store, &mut out);
            run.device = polled;
            match polled {
                Ok(Poll::Send(n)) => {
                    link.send(false, &out[..n], &mut run);
                    progress = true;
                }
                Ok(Poll::Receive) => {
                    if link.down.is_empty() {
                        break;
                    }
                    progress |= n > 0;
                }
                Ok(_) | Err(_) => break,
            }
        }
        // Server consumes.
        if let Some(s) = session.as_mut() {
            while run.server.is_none() {
                let Some(frame) = take_frame(&mut link.up) else {
                    break;
                };
                progress = true;
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => {
                        run.server = Some(Err(e));
                        break;
                    }
                };
                match s.handle(&frame) {
                    Ok(Event::Ready { offset, .. }) => run.ready.push(offset),
                    Ok(Event::Acked { offset, .. }) => run.acks.push(offset),
                    Ok(Event::Uploaded { bytes, .. }) => upload.extend_from_slice(bytes),
                    Ok(Event::Committed { .. }) => run.server = Some(Ok(true)),
                    Ok(Event::Staged { .. }) => {}
                    Ok(Event::Files(files)) => {
                        let h = server::peek_hello(&hello).unwrap();
                        let planned = (planner.take().unwrap())(repo, &h, &files.files);
                        let planned = steps.get_or_init(|| planned);
                        if planned.is_empty() {
                            let n = s.no_update(&mut sout).unwrap();
                            link.send(true, &sout[..n], &mut run);
                            run.server = Some(Ok(false));
                        } else if let Err(e) = s.plan(planned) {
                            run.server = Some(Err(e));
                        }
                    }
                    Err(e) => run.server = Some(Err(e)),
                };
            }
        }
        let device_over = !matches!(run.device, Ok(Poll::Receive) | Ok(Poll::Send(_)));
        if (device_over && (run.server.is_some() || link.up.is_empty())) || !progress {
            break;
        }
    }
    run.uploaded = upload;
    run
}

/// A man in the middle that changes nothing.
pub fn pass() -> impl FnMut(bool, usize, &mut Vec<u8>) -> bool {
    |_, _, _| true
}
