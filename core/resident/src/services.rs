//! The service table: `extern "C"` functions, generic over the board, that overlays call.
//!
//! Every service gets the opaque `core` pointer back as its first argument and checks its arguments:
//! an overlay cannot make the core read or write outside the buffers it passed, and it reaches flash
//! only through the store, which never overwrites a live file.

use crate::heap::AccountingHeap;
use crate::install::{self, Install};
use crate::Board;
use alloc::boxed::Box;
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::slice;
use rota_abi::{
    net, rollback, status, CommitParams, FileInfo, Name, NetParams, Services, ABI_VERSION,
};
use rota_net::{Net, NetConfig, TcpState};
use rota_serial_link::{SerialLink, State as SerialState};
use rota_store::{Cursor, Staging, Store};
use sha2::Digest;

/// What the services reach through the `core` pointer.
pub struct CoreState<'a, B: Board> {
    /// The board.
    pub board: &'a mut B,
    /// The heap overlays allocate from.
    pub heap: &'static AccountingHeap,
    /// The link to the server, while it is up (allocated from the heap, freed by
    /// [`CoreState::net_down`]).
    link: Option<Link>,
    /// SHA-256 of the file being staged, over the bytes the store wrote and read back so far.
    running: Option<RunningDigest>,
    /// Where the last `file_info` stopped, so a listing in index order is one scan, not one per index.
    listing: Option<Listing>,
    /// How the file being staged is written: as received, or relocated for running in place.
    install: Option<Install>,
    /// The file the store is staging and where its last write ended, from one `stage_write` to the
    /// next (so the store need not find it again); forgotten by every other service that changes
    /// the store.
    staging: Option<Staging>,
    /// The arena's size in bytes: a blob with a larger image runs in place.
    arena: u32,
    /// The phase whose code calls the services now (`rota_abi::rollback` numbering): only the
    /// app's `confirm` confirms a generation committed with `needs_app`.
    phase: u8,
    /// Whether `confirm` may confirm the generation on trial: false on a boot whose overlays were
    /// refused or failed (the core sets it for the app), so that a generation whose updater does
    /// not work is never confirmed ([`status::EPERM`]).
    pub may_confirm: bool,
}

/// The link the connection services run over: TCP on the board's interface, or the console's
/// serial line. Overlays see the same services either way.
enum Link {
    Tcp(Box<Net>),
    Serial(Box<SerialLink>),
}

/// The board's console as the serial link's line.
struct Console<'b, B: Board>(&'b mut B);

impl<B: Board> rota_serial_link::Port for Console<'_, B> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.console_write(bytes);
    }
    fn read(&mut self) -> Option<u8> {
        self.0.console_read()
    }
}

/// A listing in progress: the next index of the live or staged files and where the store's scan
/// resumes for it. Forgotten by every service that changes the store.
#[derive(Clone, Copy)]
struct Listing {
    staged: u32,
    next: u32,
    cursor: Cursor,
}

/// The digest of a staged file, computed as it is written (so finishing it needs no second pass
/// over flash). Only for a transfer that started at offset 0 and went on without a gap.
struct RunningDigest {
    name: Name,
    next: u32,
    hasher: sha2::Sha256,
}

impl<'a, B: Board> CoreState<'a, B> {
    /// State with the network down, for a core whose overlay arena holds `arena` bytes: the store
    /// services relocate a blob too large for it for running in place while they stage it
    /// (`docs/overlay-format.md`, "Running in place").
    pub fn new(board: &'a mut B, heap: &'static AccountingHeap, arena: usize) -> Self {
        Self {
            board,
            heap,
            link: None,
            running: None,
            listing: None,
            install: None,
            staging: None,
            arena: u32::try_from(arena).unwrap_or(u32::MAX),
            phase: crate::trial::rollback_phase(crate::Phase::Boot),
            may_confirm: true,
        }
    }

    /// The phase whose code runs from now on (`rota_abi::rollback` numbering: the heap report's
    /// phases, [`rota_abi::rollback::PHASE_APP`] for the app): who may confirm, and what a panic or
    /// fault handler records on a trial boot.
    pub fn set_phase(&mut self, phase: u8) {
        self.phase = phase;
        crate::trial::set_phase(phase);
    }

    /// Drives the link once, if it is up; returns [`net`] bits or [`status::ENODEV`].
    pub fn poll(&mut self) -> i32 {
        match self.link.as_mut() {
            None => status::ENODEV,
            Some(Link::Tcp(n)) => {
                let now = self.board.now_ms();
                let Some(nic) = self.board.nic() else {
                    return status::ENODEV;
                };
                n.poll(nic, now);
                let mut bits = 0;
                if n.ip().is_some() {
                    bits |= net::HAS_IP;
                }
                match n.state() {
                    TcpState::Established => bits |= net::CONNECTED,
                    TcpState::Closed | TcpState::PeerClosed => bits |= net::CLOSED,
                    TcpState::Connecting => {}
                }
                bits
            }
            Some(Link::Serial(l)) => {
                l.poll(&mut Console(&mut *self.board));
                // The line is always "addressed"; the connection is the bridge's.
                net::HAS_IP
                    | match l.state() {
                        SerialState::Established => net::CONNECTED,
                        SerialState::Closed(_) => net::CLOSED,
                        SerialState::Idle | SerialState::Connecting => 0,
                    }
            }
        }
    }

    /// Closes the connection and frees every buffer of the link, the interface's own included.
    pub fn net_down(&mut self) {
        match self.link.take() {
            Some(Link::Tcp(mut n)) => {
                n.close();
                let now = self.board.now_ms();
                if let Some(nic) = self.board.nic() {
                    n.poll(nic, now);
                }
            }
            Some(Link::Serial(mut l)) => l.close(&mut Console(&mut *self.board)),
            None => {}
        }
        self.board.nic_release();
    }
}

/// Builds the table for `state`; valid while `state` lives and is not otherwise borrowed.
pub fn table<B: Board>(state: &mut CoreState<'_, B>) -> Services {
    Services {
        abi_version: ABI_VERSION,
        core: state as *mut CoreState<'_, B> as *mut c_void,
        console_write: console_write::<B>,
        console_read: console_read::<B>,
        heap_alloc: heap_alloc::<B>,
        heap_free: heap_free::<B>,
        time_ms: time_ms::<B>,
        reset: reset::<B>,
        net_up: net_up::<B>,
        net_poll: net_poll::<B>,
        net_connect: net_connect::<B>,
        net_send: net_send::<B>,
        net_recv: net_recv::<B>,
        net_down: net_down::<B>,
        file_info: file_info::<B>,
        file_read: file_read::<B>,
        stage_begin: stage_begin::<B>,
        stage_write: stage_write::<B>,
        stage_finish: stage_finish::<B>,
        stage_drop: stage_drop::<B>,
        stage_delete: stage_delete::<B>,
        stage_rename: stage_rename::<B>,
        commit: commit::<B>,
        confirm: confirm::<B>,
    }
}

// Every service is an `unsafe extern "C" fn` whose contract is the ABI's: `core` is the pointer the
// table was built with (its state alive and not otherwise borrowed during the call), and every pointer
// argument is null or valid for what its type and length say. The SAFETY comments below rely on it.

/// # Safety
/// `core` must come from [`table`] and its state must be alive.
unsafe fn state<'a, B: Board>(core: *mut c_void) -> &'a mut CoreState<'a, B> {
    // SAFETY: `table` made `core` from a `&mut CoreState<B>` that outlives every call (the contract).
    unsafe { &mut *(core as *mut CoreState<'a, B>) }
}

/// A slice from an overlay's pointer and length (empty for null).
///
/// # Safety
/// A non-null `ptr` must be valid for `len` bytes for `'a`.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() {
        &[]
    } else {
        // SAFETY: non-null and valid for `len` bytes (the contract).
        unsafe { slice::from_raw_parts(ptr, len) }
    }
}

/// A writable slice from an overlay's pointer and length (`None` for null).
///
/// # Safety
/// A non-null `ptr` must be valid for writes of `len` bytes for `'a`, and not otherwise borrowed.
unsafe fn bytes_mut<'a>(ptr: *mut u8, len: usize) -> Option<&'a mut [u8]> {
    // SAFETY: non-null and valid for writes of `len` bytes (the contract).
    (!ptr.is_null()).then(|| unsafe { slice::from_raw_parts_mut(ptr, len) })
}

/// A store error as a service status code: one code per failure, so the overlay, its log line and
/// the server (which gets the code in a `Failed` message) all say what happened.
pub fn store_status(e: rota_store::Error) -> i32 {
    e.status()
}

fn done(r: Result<(), rota_store::Error>) -> i32 {
    r.map_or_else(store_status, |()| status::OK)
}

/// A count as a status (counts above `i32::MAX` cannot happen with the buffers overlays own).
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The store, for a service that only reads it.
fn store<'s, B: Board>(s: &'s mut CoreState<'_, B>) -> Store<&'s mut B::Flash> {
    Store::new(s.board.flash())
}

/// The store, for a service that changes it: a listing in progress starts over, and what the core
/// knew about the file being staged is found again from flash.
fn store_mut<'s, B: Board>(s: &'s mut CoreState<'_, B>) -> Store<&'s mut B::Flash> {
    s.listing = None;
    s.install = None;
    s.staging = None;
    Store::new(s.board.flash())
}

unsafe extern "C" fn console_write<B: Board>(core: *mut c_void, buf: *const u8, len: usize) {
    // SAFETY: the ABI contract (see above) covers `core`, `buf` and `len`.
    let (s, buf) = unsafe { (state::<B>(core), bytes(buf, len)) };
    s.board.console_write(buf);
}

unsafe extern "C" fn console_read<B: Board>(core: *mut c_void) -> i32 {
    // SAFETY: the ABI contract covers `core`.
    let s = unsafe { state::<B>(core) };
    let key = match s.link.as_mut() {
        // While the serial link reads the line, keys typed between frames wait in its queue.
        Some(Link::Serial(l)) => l.console_byte(&mut Console(&mut *s.board)),
        _ => s.board.console_read(),
    };
    key.map_or(-1, i32::from)
}

unsafe extern "C" fn heap_alloc<B: Board>(core: *mut c_void, size: usize, align: usize) -> *mut u8 {
    // SAFETY: the ABI contract covers `core`.
    let s = unsafe { state::<B>(core) };
    match Layout::from_size_align(size, align) {
        // SAFETY: a valid layout of non-zero size, as `GlobalAlloc::alloc` requires.
        Ok(l) if size > 0 => unsafe { s.heap.alloc(l) },
        _ => core::ptr::null_mut(),
    }
}

unsafe extern "C" fn heap_free<B: Board>(
    core: *mut c_void,
    ptr: *mut u8,
    size: usize,
    align: usize,
) {
    // SAFETY: the ABI contract covers `core`.
    let s = unsafe { state::<B>(core) };
    if let Ok(l) = Layout::from_size_align(size, align) {
        // SAFETY: `HeapFreeFn`'s contract: `ptr`, `size` and `align` are those of one live block
        // from `heap_alloc`, which allocated it from this heap with this layout.
        unsafe { s.heap.dealloc(ptr, l) };
    }
}

unsafe extern "C" fn time_ms<B: Board>(core: *mut c_void) -> u32 {
    // SAFETY: the ABI contract covers `core`.
    let s = unsafe { state::<B>(core) };
    s.board.now_ms()
}

unsafe extern "C" fn reset<B: Board>(core: *mut c_void) -> ! {
    // SAFETY: the ABI contract covers `core`.
    let s = unsafe { state::<B>(core) };
    s.net_down();
    s.board.reset()
}

unsafe extern "C" fn net_up<B: Board>(core: *mut c_void, params: *const NetParams) -> i32 {
    // SAFETY: the ABI contract covers `core` and `params` (null or valid).
    let (s, params) = unsafe { (state::<B>(core), params.as_ref()) };
    let Some(p) = params else {
        return status::EINVAL;
    };
    s.net_down();
    match p.link {
        net::LINK_TCP => {}
        net::LINK_SERIAL => {
            s.link = Some(Link::Serial(Box::new(SerialLink::new())));
            return status::OK;
        }
        _ => return status::EINVAL,
    }
    let cfg = NetConfig {
        mac: s.board.mac(),
        ip: (p.ip != [0; 4]).then_some((p.ip, p.prefix.min(32))),
        gateway: p.gateway,
        rx_buffer: match p.rx_window {
            0 => rota_net::RX_BUFFER,
            n => usize::from(n),
        },
        seed: p.seed,
    };
    let now = s.board.now_ms();
    let Some(nic) = s.board.nic() else {
        return status::ENODEV;
    };
    s.link = Some(Link::Tcp(Box::new(Net::new(nic, &cfg, now))));
    status::OK
}

unsafe extern "C" fn net_poll<B: Board>(core: *mut c_void) -> i32 {
    // SAFETY: the ABI contract covers `core`.
    let s = unsafe { state::<B>(core) };
    s.poll()
}

unsafe extern "C" fn net_connect<B: Board>(
    core: *mut c_void,
    ip: *const [u8; 4],
    port: u16,
) -> i32 {
    // SAFETY: the ABI contract covers `core` and `ip` (null or valid).
    let (s, ip) = unsafe { (state::<B>(core), ip.as_ref()) };
    let Some(ip) = ip else {
        return status::EINVAL;
    };
    let ok = match s.link.as_mut() {
        None => return status::ENODEV,
        Some(Link::Tcp(n)) => n.connect(*ip, port).is_ok(),
        Some(Link::Serial(l)) => l.connect(&mut Console(&mut *s.board), *ip, port).is_ok(),
    };
    if ok {
        status::OK
    } else {
        status::ECLOSED
    }
}

unsafe extern "C" fn net_send<B: Board>(core: *mut c_void, buf: *const u8, len: usize) -> i32 {
    // SAFETY: the ABI contract covers `core`, `buf` and `len`.
    let (s, buf) = unsafe { (state::<B>(core), bytes(buf, len)) };
    let r = match s.link.as_mut() {
        None => return status::ENODEV,
        Some(Link::Tcp(n)) => n.send(buf).ok(),
        Some(Link::Serial(l)) => l.send(&mut Console(&mut *s.board), buf).ok(),
    };
    s.poll();
    r.map_or(status::ECLOSED, count)
}

unsafe extern "C" fn net_recv<B: Board>(core: *mut c_void, buf: *mut u8, len: usize) -> i32 {
    // SAFETY: the ABI contract covers `core`, `buf` and `len`.
    let (s, buf) = unsafe { (state::<B>(core), bytes_mut(buf, len)) };
    s.poll();
    let (Some(link), Some(buf)) = (s.link.as_mut(), buf) else {
        return if s.link.is_none() {
            status::ENODEV
        } else {
            status::EINVAL
        };
    };
    let r = match link {
        Link::Tcp(n) => n.recv(buf).ok(),
        Link::Serial(l) => l.recv(&mut Console(&mut *s.board), buf).ok(),
    };
    r.map_or(status::ECLOSED, count)
}

unsafe extern "C" fn net_down<B: Board>(core: *mut c_void) {
    // SAFETY: the ABI contract covers `core`.
    let s = unsafe { state::<B>(core) };
    s.net_down()
}

unsafe extern "C" fn file_info<B: Board>(
    core: *mut c_void,
    staged: u32,
    index: u32,
    out: *mut FileInfo,
) -> i32 {
    // SAFETY: the ABI contract covers `core` and `out` (null or valid for one write).
    let (s, out) = unsafe { (state::<B>(core), out.as_mut()) };
    let Some(out) = out else {
        return status::EINVAL;
    };
    // Resume where the previous call stopped when it asked for the index before this one.
    let (first, mut cursor) = match s.listing.take() {
        Some(l) if l.staged == staged && l.next <= index => (l.next, l.cursor),
        _ => (0, Cursor::default()),
    };
    let mut st = store(s);
    for i in first..=index {
        let info = if staged == 0 {
            st.next_file(&mut cursor).map(|f| {
                f.map(|f| FileInfo {
                    name: f.name,
                    size: f.size,
                    version: f.version,
                    done: f.size,
                    digest: f.digest,
                })
            })
        } else {
            st.next_staged(&mut cursor).map(|f| {
                f.map(|f| FileInfo {
                    name: f.name,
                    size: f.size,
                    version: f.version,
                    done: f.done,
                    digest: f.digest,
                })
            })
        };
        match info {
            Err(e) => return store_status(e),
            Ok(None) => return status::ENOENT,
            Ok(Some(f)) if i == index => {
                *out = f;
                s.listing = Some(Listing {
                    staged,
                    next: index + 1,
                    cursor,
                });
                return status::OK;
            }
            Ok(Some(_)) => {}
        }
    }
    status::ENOENT
}

/// # Safety
/// A non-null `name` must point to a valid [`Name`].
unsafe fn name_arg<'a>(name: *const Name) -> Option<&'a [u8]> {
    // SAFETY: null or valid (the contract).
    let name = unsafe { name.as_ref() };
    name.map(Name::as_bytes).filter(|n| !n.is_empty())
}

unsafe extern "C" fn file_read<B: Board>(
    core: *mut c_void,
    name: *const Name,
    offset: u32,
    buf: *mut u8,
    len: usize,
) -> i32 {
    // SAFETY: the ABI contract covers `core`, `name`, `buf` and `len`.
    let (s, name, buf) = unsafe { (state::<B>(core), name_arg(name), bytes_mut(buf, len)) };
    let (Some(name), Some(buf)) = (name, buf) else {
        return status::EINVAL;
    };
    let mut st = store(s);
    match st.find(name) {
        Ok(Some(f)) => st.read(&f, offset, buf).map_or_else(store_status, count),
        Ok(None) => status::ENOENT,
        Err(e) => store_status(e),
    }
}

unsafe extern "C" fn stage_begin<B: Board>(
    core: *mut c_void,
    name: *const Name,
    size: u32,
    digest: *const [u8; 32],
    version: u32,
) -> i32 {
    // SAFETY: the ABI contract covers `core`, `name` and `digest` (each null or valid).
    let (s, n, digest) = unsafe { (state::<B>(core), name_arg(name), digest.as_ref()) };
    s.running = None;
    let (Some(n), Some(digest)) = (n, digest) else {
        return status::EINVAL;
    };
    let mut st = store_mut(s);
    let r = st.stage_begin(n, size, digest, version);
    let staging = st.staging();
    let at = match r {
        Ok(at) => at,
        Err(e) => return store_status(e),
    };
    s.staging = staging;
    if let (0, Some(name)) = (at, Name::new(n)) {
        s.running = Some(RunningDigest {
            name,
            next: 0,
            hasher: sha2::Sha256::new(),
        });
    }
    count(at as usize)
}

unsafe extern "C" fn stage_write<B: Board>(
    core: *mut c_void,
    name: *const Name,
    offset: u32,
    buf: *const u8,
    len: usize,
) -> i32 {
    // SAFETY: the ABI contract covers `core`, `name`, `buf` and `len`.
    let (s, n, data) = unsafe { (state::<B>(core), name_arg(name), bytes(buf, len)) };
    let Some(n) = n else {
        return status::EINVAL;
    };
    s.listing = None;
    let (slot, staging) = (&mut s.install, &mut s.staging);
    let r = install::write(s.board, slot, staging, s.arena, n, offset, data);
    // The store has read these bytes back from flash and compared them: hashing them is hashing flash
    // (the bytes as received; the words relocated for running in place are a function of them and of
    // the relocation table before them, which is hashed too).
    match (&r, s.running.as_mut()) {
        (Ok(()), Some(d)) if d.name.as_bytes() == n && d.next == offset => {
            d.hasher.update(data);
            d.next += len as u32;
        }
        _ => s.running = None,
    }
    r.err().unwrap_or(status::OK)
}

unsafe extern "C" fn stage_finish<B: Board>(core: *mut c_void, name: *const Name) -> i32 {
    // SAFETY: the ABI contract covers `core` and `name`.
    let (s, n) = unsafe { (state::<B>(core), name_arg(name)) };
    let Some(n) = n else {
        return status::EINVAL;
    };
    // The file takes no more bytes (and a resumed one may be dropped below).
    s.staging = None;
    match s.running.take() {
        Some(d) if d.name.as_bytes() == n => finish_hashed(s, n, d),
        // Resumed or interrupted: hashed from flash.
        _ => finish_from_flash(s, n),
    }
}

/// Finishes staged file `n` with the digest computed as it was written. Out of line, as
/// [`finish_from_flash`] is, so that the service's frame holds neither path's buffers.
#[inline(never)]
fn finish_hashed<B: Board>(s: &mut CoreState<'_, B>, n: &[u8], d: RunningDigest) -> i32 {
    let content: [u8; 32] = d.hasher.finalize().into();
    done(store_mut(s).stage_finish_hashed(n, &content))
}

/// Finishes staged file `n` hashed from flash: by the store, unless the file is stored relocated for
/// running in place, which the core hashes with the relocated words un-relocated.
#[inline(never)]
fn finish_from_flash<B: Board>(s: &mut CoreState<'_, B>, n: &[u8]) -> i32 {
    match install::resumed_digest(s.board, s.arena, n) {
        Ok(Some(content)) => done(store_mut(s).stage_finish_hashed(n, &content)),
        Ok(None) => done(store_mut(s).stage_finish(n)),
        Err(code) => code,
    }
}

unsafe extern "C" fn stage_drop<B: Board>(core: *mut c_void, name: *const Name) -> i32 {
    // SAFETY: the ABI contract covers `core` and `name`.
    let (s, n) = unsafe { (state::<B>(core), name_arg(name)) };
    n.map_or(status::EINVAL, |n| done(store_mut(s).stage_drop(n)))
}

unsafe extern "C" fn stage_delete<B: Board>(core: *mut c_void, name: *const Name) -> i32 {
    // SAFETY: the ABI contract covers `core` and `name`.
    let (s, n) = unsafe { (state::<B>(core), name_arg(name)) };
    n.map_or(status::EINVAL, |n| done(store_mut(s).stage_delete(n)))
}

unsafe extern "C" fn stage_rename<B: Board>(
    core: *mut c_void,
    from: *const Name,
    to: *const Name,
) -> i32 {
    // SAFETY: the ABI contract covers `core`, `from` and `to`.
    let (s, from, to) = unsafe { (state::<B>(core), name_arg(from), name_arg(to)) };
    let (Some(from), Some(to)) = (from, to) else {
        return status::EINVAL;
    };
    done(store_mut(s).stage_rename(from, to))
}

unsafe extern "C" fn commit<B: Board>(
    core: *mut c_void,
    config: *const u8,
    len: usize,
    params: *const CommitParams,
) -> i32 {
    // SAFETY: the ABI contract covers `core`, `config`, `len` and `params` (null or valid).
    let (s, config, params) = unsafe { (state::<B>(core), bytes(config, len), params.as_ref()) };
    let Some(params) = params.copied() else {
        return status::EINVAL;
    };
    let mut st = store_mut(s);
    let mut payload = [0u8; crate::record::PAYLOAD_MAX];
    let new_payload = if config.is_empty() {
        None
    } else {
        // A new config starts without a heap report; the next boot writes one.
        match crate::record::join(config, &[], &mut payload) {
            Some(n) => Some(&payload[..n]),
            None => return status::ETOOLONG,
        }
    };
    // No garbage collection here: the caller may be running in place from the very extent this
    // commit just superseded. The core collects after the phase (see `run_phases`).
    match st.commit(new_payload, &params) {
        Ok(generation) => {
            // What runs from here to the reboot is the committing generation's code, not the new
            // one's: a panic or fault in it must not count against the generation just committed.
            crate::trial::disarm();
            count(generation as usize)
        }
        Err(e) => store_status(e),
    }
}

unsafe extern "C" fn confirm<B: Board>(core: *mut c_void) -> i32 {
    // SAFETY: the ABI contract covers `core`.
    let s = unsafe { state::<B>(core) };
    let (app, may) = (s.phase == rollback::PHASE_APP, s.may_confirm);
    let mut st = store_mut(s);
    let info = match st.config(&mut []) {
        Ok(i) => i,
        Err(e) => return store_status(e),
    };
    if !info.on_trial() {
        return status::OK;
    }
    if (info.needs_app && !app) || !may {
        return status::EPERM;
    }
    match st.confirm() {
        Ok(_) => {
            // Confirmed: nothing this boot does from now on is held against the generation.
            crate::trial::disarm();
            status::OK
        }
        Err(e) => store_status(e),
    }
}
