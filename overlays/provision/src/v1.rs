//! luaOTA's protocol v1, the compatibility mode (`protocol == 1` in the device config): the
//! `rota-luaota` session over the same connection and store, so an original luaOTA server can
//! provision the device. Files arrive whole in a RAM buffer (v1 announces neither size nor digest
//! beforehand, and luaOTA's own client buffers them too), are staged with their SHA-256 and committed
//! at `restart` together with the server's `chk` and file numbers.

use crate::io::{check, name, Link};
use core::mem::{align_of, size_of};
use rota_abi::{verdict, CommitParams, Name, Services};
use rota_luaota::{Config, FileNumber, Outcome, Poll, Session, V1Store, FILE_LEN, LINE_LEN};
use rota_wire::ConfigView;

/// Largest piece sent or received at once.
const IO_MAX: usize = 256;

/// The session's buffers, on the heap for its duration.
struct Buffers {
    line: [u8; LINE_LEN],
    file: [u8; FILE_LEN],
    rx: [u8; IO_MAX],
    tx: [u8; IO_MAX],
    record: [u8; rota_abi::CONFIG_MAX],
}

/// Runs a v1 check-in; returns the verdict for the core. Not inlined: its frame (the session and its
/// config) must not weigh on the v2 path's stack.
#[inline(never)]
pub fn run(svc: &Services, view: &ConfigView, link: &Link) -> i32 {
    // v1 cannot resume: nothing staged by an earlier, broken session may ride along with this one.
    while let Ok(Some(f)) = svc.file_info(true, 0) {
        if svc.stage_drop(&f.name) < 0 {
            break;
        }
    }
    let p = svc.alloc(size_of::<Buffers>(), align_of::<Buffers>()) as *mut Buffers;
    if p.is_null() {
        svc.write(b"provision: out of memory\n");
        return verdict::APP;
    }
    // SAFETY: a fresh block of the right size and alignment; all-zero bytes are valid buffers; it is
    // freed exactly once, after its last use.
    unsafe {
        p.write_bytes(0, 1);
        let v = check_in(svc, view, link, &mut *p);
        svc.free(p as *mut u8, size_of::<Buffers>(), align_of::<Buffers>());
        v
    }
}

#[inline(never)]
fn check_in(svc: &Services, view: &ConfigView, link: &Link, b: &mut Buffers) -> i32 {
    let Some(config) = v1_config(view) else {
        return fail(svc, b"config does not fit v1");
    };
    let Buffers {
        line,
        file,
        rx,
        tx,
        record,
    } = b;
    let store = SvcStore {
        svc,
        listed: Name::new(b"-").expect("valid"),
    };
    let Ok(mut session) = Session::new(view.secret, view.device_id, &config, store, line, file)
    else {
        return fail(svc, b"check-in does not fit");
    };
    // Bytes received and not yet fed, in `rx[at..n]`.
    let (mut at, mut n) = (0, 0);
    loop {
        match session.poll() {
            Poll::Transmit => {
                let Ok(k) = session.transmit(tx) else {
                    return fail(svc, b"upload failed");
                };
                if !link.send_all(&tx[..k]) {
                    return fail(svc, b"server closed the connection");
                }
            }
            Poll::Receive if at < n => match session.feed(&rx[at..n]) {
                Ok(used) => at += used,
                Err(_) => return fail(svc, b"bad record from the server"),
            },
            Poll::Receive => {
                at = 0;
                n = match link.recv(rx) {
                    Ok(n) => n,
                    Err(why) => return fail(svc, why),
                };
            }
            Poll::Done => break,
            Poll::Aborted => return fail(svc, b"session aborted"),
        }
    }
    match session.outcome() {
        Some(Outcome::Restart(new)) => {
            let mut chk = [0u8; 32];
            let chk = match new.chk {
                Some(c) => {
                    chk = c;
                    &chk[..]
                }
                None => &chk[..0],
            };
            let files = new.files.iter().map(|f| (&f.name[..], f.number));
            let Ok(n) = view.with_v1_state(chk, files, record) else {
                return fail(svc, b"new config does not fit");
            };
            // luaOTA's releases carry no manifest: confirmed at once, as before.
            let rc = svc.commit(&record[..n], &CommitParams::IMMEDIATE);
            if rc < 0 {
                return fail(svc, b"commit failed");
            }
            link.flush();
            svc.write(b"provision: v1 update committed, generation ");
            svc.write_dec(rc as u32);
            svc.write(b"\n");
            verdict::RESTART
        }
        Some(Outcome::NoUpdate(_)) => {
            svc.write(b"provision: v1 no update\n");
            verdict::APP
        }
        None => fail(svc, b"session ended without an outcome"),
    }
}

/// The luaOTA view of the device config: server as dotted decimal, the stored `chk` and numbers.
fn v1_config(view: &ConfigView) -> Option<Config> {
    let mut server = [0u8; 15];
    let mut n = 0;
    for (i, octet) in view.server.iter().enumerate() {
        if i > 0 {
            server[n] = b'.';
            n += 1;
        }
        let mut digits = [0u8; 10];
        let d = rota_abi::format_dec(u32::from(*octet), &mut digits);
        server[n..n + d.len()].copy_from_slice(d);
        n += d.len();
    }
    let mut config = Config::new(&server[..n], view.port)?;
    config.chk = view.chk.try_into().ok();
    for (name, number) in view.v1_files() {
        let name = heapless::Vec::from_slice(name).ok()?;
        config.files.push(FileNumber { name, number }).ok()?;
    }
    Some(config)
}

/// The core's store services as luaOTA's store; errors are service status codes.
struct SvcStore<'a> {
    svc: &'a Services,
    listed: Name,
}

impl V1Store for SvcStore<'_> {
    type Error = i32;

    fn put(&mut self, n: &[u8], data: &[u8], digest: &[u8; 32]) -> Result<(), i32> {
        let n = name(n)?;
        let at = check(self.svc.stage_begin(&n, data.len() as u32, digest, 0))? as usize;
        if at < data.len() {
            check(self.svc.stage_write(&n, at as u32, &data[at..]))?;
        }
        check(self.svc.stage_finish(&n)).map(drop)
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), i32> {
        check(self.svc.stage_rename(&name(from)?, &name(to)?)).map(drop)
    }

    fn delete(&mut self, n: &[u8]) -> Result<(), i32> {
        check(self.svc.stage_delete(&name(n)?)).map(drop)
    }

    fn size(&mut self, n: &[u8]) -> Option<u32> {
        (0..)
            .map_while(|i| self.svc.file_info(false, i).ok().flatten())
            .find(|f| f.name.as_bytes() == n)
            .map(|f| f.size)
    }

    fn list(&mut self, index: usize) -> Option<(&[u8], u32)> {
        let f = self.svc.file_info(false, index as u32).ok().flatten()?;
        self.listed = f.name;
        Some((self.listed.as_bytes(), f.size))
    }

    fn read(&mut self, n: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, i32> {
        check(self.svc.file_read(&name(n)?, offset, buf)).map(|n| n as usize)
    }
}

#[inline(never)]
fn fail(svc: &Services, why: &[u8]) -> i32 {
    svc.write(b"provision: v1: ");
    svc.write(why);
    svc.write(b"; nothing committed, starting app\n");
    verdict::APP
}
