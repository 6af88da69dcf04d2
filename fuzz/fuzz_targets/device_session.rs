//! rota-wire's `DeviceSession` with the server's bytes chosen by the fuzzer, over the in-memory
//! store (`rota_wire::mem::MemStore`) holding two files, for a device whose application is `app`.
//!
//! Input: records `mode:u8 len:u16le bytes[len]`. `mode & 3`: 0 seals `bytes` (kind, then payload)
//! with the session key of server nonce [7; 16] at the next sequence number; 1 seals it with the
//! Hello's key (a NoUpdate's); 2 sends `bytes` as they are; 3 seals with the session key at a wrong
//! sequence number: `k = max(mode >> 2, 1)` ahead, or `256 * k / 4` ahead when `k` is a multiple of
//! 4 (the right low byte, the wrong number). `mode >> 4` (when not 0) cuts what is fed into pieces
//! of `7 * (mode >> 4)` bytes. The session starts with a real Hello; a Welcome (kind 0x81, payload
//! sixteen 7s) sealed in mode 0 starts the session.
//!
//! Checks: no panic, no endless loop; `feed` never takes more than it is given; every frame the
//! device sends is a whole frame, tagged with the session key in its direction and at consecutive
//! sequence numbers, and decodes as a device message; a `Files` lists exactly the committed files;
//! after `Committed(g)` the store is at `g`, and the commit was kept as the session did: the
//! device's security version, the new config's trial boots (else the device's), `needs_app` exactly
//! when the session began, deleted or renamed `app`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rota_wire::frame::seal;
use rota_wire::mem::{MemError, MemStore};
use rota_wire::msg::kind;
use rota_wire::{
    CommitInfo, ConfigView, Device, DeviceMsg, DeviceSession, Digest, Dir, FileStore, Frame, Key,
    Link, Poll, StoredFile, HEADER_LEN, MAX_FRAME, MAX_PAYLOAD,
};

const SECRET: &[u8] = b"supersekrit";
const DEVICE: u32 = 11223344;
const APP: &[u8] = b"app";
const TRIALS: u8 = 3;

/// The store, and what the session asked of it.
#[derive(Default)]
struct Watched {
    store: MemStore,
    /// A begin, delete or rename named the application.
    app_touched: bool,
    /// What the commit was given: the config's trial boots (or none), and the info.
    commit: Option<(Option<u8>, CommitInfo)>,
}

impl FileStore for Watched {
    type Error = MemError;

    fn stage_begin(&mut self, name: &[u8], size: u32, d: &Digest, v: u32) -> Result<u32, MemError> {
        self.app_touched |= name == APP;
        self.store.stage_begin(name, size, d, v)
    }
    fn stage_write(&mut self, name: &[u8], offset: u32, data: &[u8]) -> Result<(), MemError> {
        self.store.stage_write(name, offset, data)
    }
    fn stage_finish(&mut self, name: &[u8]) -> Result<(), MemError> {
        self.store.stage_finish(name)
    }
    fn stage_drop(&mut self, name: &[u8]) -> Result<(), MemError> {
        self.store.stage_drop(name)
    }
    fn stage_delete(&mut self, name: &[u8]) -> Result<(), MemError> {
        self.app_touched |= name == APP;
        self.store.stage_delete(name)
    }
    fn stage_rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), MemError> {
        self.app_touched |= from == APP || to == APP;
        self.store.stage_rename(from, to)
    }
    fn read(&mut self, name: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, MemError> {
        self.store.read(name, offset, buf)
    }
    fn file(&mut self, index: u32) -> Result<Option<StoredFile>, MemError> {
        self.store.file(index)
    }
    fn commit(&mut self, config: Option<&[u8]>, info: &CommitInfo) -> Result<u32, MemError> {
        let trials = config.map(|c| ConfigView::parse(c).expect("a checked config").trials);
        let generation = self.store.commit(config, info)?;
        self.commit = Some((trials, *info));
        Ok(generation)
    }
    fn error_code(error: &MemError) -> u8 {
        MemStore::error_code(error)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut store = Watched::default();
    store
        .store
        .files
        .insert(APP.to_vec(), ((0..3000u32).map(|i| i as u8).collect(), 3));
    store
        .store
        .files
        .insert(b"log".to_vec(), (b"boot 1\nboot 2\n".to_vec(), 1));
    let nonce = store.store.reboot();
    let hello_key = Key::hello(SECRET, DEVICE, nonce);
    let key = Key::session(SECRET, DEVICE, nonce, &[7; 16]);
    let mut device = DeviceSession::for_device(Device {
        app: APP,
        trials: TRIALS,
        ..Device::plain(SECRET, Link::Tcp)
    });
    let mut out = vec![0u8; MAX_FRAME];
    {
        let hello = store.store.check_in(DEVICE, nonce);
        device.hello(&hello, &mut out).unwrap();
    }
    let mut tx_seq = 0u32; // the device's last sequence number (the Hello's: 0)
    let mut rx_seq = 0u32;
    let mut over = false;
    let mut frame = vec![0u8; MAX_FRAME];
    let mut rest = data;
    while rest.len() >= 3 && !over {
        let mode = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let wire: &[u8] = match mode & 3 {
            2 => bytes,
            m => {
                let Some((&kind, payload)) = bytes.split_first() else {
                    continue;
                };
                let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
                frame[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
                let (k, seq) = match m {
                    0 => (&key, rx_seq),
                    1 => (&hello_key, rx_seq),
                    _ => {
                        let k = u32::from(mode >> 2).max(1);
                        let ahead = if k % 4 == 0 { 256 * k / 4 } else { k };
                        (&key, rx_seq.wrapping_add(ahead))
                    }
                };
                rx_seq = rx_seq.wrapping_add(1);
                let n = seal(&mut frame, k, Dir::ToDevice, kind, seq, payload.len()).unwrap();
                &frame[..n]
            }
        };
        let piece = match mode >> 4 {
            0 => usize::MAX,
            p => 7 * usize::from(p),
        };
        let mut left = wire;
        while !left.is_empty() && !over {
            let give = &left[..left.len().min(piece)];
            let took = device.feed(give);
            assert!(took <= give.len());
            left = &left[took..];
            let sent = poll(
                &mut device,
                &mut store,
                &mut out,
                &key,
                &mut tx_seq,
                &mut over,
            );
            if took == 0 && !sent && !over {
                // Nothing taken and nothing to do: the session must be waiting for more of the
                // frame, which `rx_buffer` then has room for.
                assert!(!device.rx_buffer().is_empty(), "feed stalls");
            }
        }
    }
});

/// Polls until the device waits for input or is over; checks what it sends. Returns whether it sent.
fn poll(
    device: &mut DeviceSession<'_>,
    store: &mut Watched,
    out: &mut [u8],
    key: &Key,
    tx_seq: &mut u32,
    over: &mut bool,
) -> bool {
    let mut sent = false;
    for _ in 0..20_000 {
        match device.poll(store, out) {
            Ok(Poll::Send(n)) => {
                let f = Frame::new_checked(&out[..n]).expect("the device sends whole frames");
                *tx_seq += 1;
                assert_eq!(
                    f.verify(key, Dir::ToServer, *tx_seq),
                    Ok(()),
                    "tagged with the session key, as the next frame"
                );
                assert_eq!(f.seq(), *tx_seq as u8, "consecutive sequence numbers");
                let msg = DeviceMsg::decode(f.kind(), f.payload()).expect("a device message");
                if let DeviceMsg::Files(files) = msg {
                    assert_eq!(f.kind(), kind::FILES);
                    let mut listed: Vec<_> = files.files.to_vec();
                    let mut committed = store.store.file_list();
                    listed.sort_by_key(|f| f.name.as_bytes());
                    committed.sort_by_key(|f| f.name.as_bytes());
                    assert_eq!(listed, committed, "Files lists the committed files");
                }
                sent = true;
            }
            Ok(Poll::Receive) => return sent,
            Ok(Poll::Committed(g)) => {
                assert_eq!(store.store.generation, g);
                let (trials, info) = store.commit.expect("committed through the store");
                assert_eq!(info.security_version, 0);
                assert_eq!(info.trial_limit, trials.unwrap_or(TRIALS));
                assert_eq!(info.needs_app, store.app_touched, "{info:?}");
                *over = true;
                return sent;
            }
            Ok(Poll::NoUpdate) | Err(_) => {
                assert!(store.commit.is_none(), "commits only with Committed");
                *over = true;
                return sent;
            }
        }
    }
    panic!("the device sends without end");
}
