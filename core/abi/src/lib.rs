//! The one ABI between rota's resident core and its overlays.
//!
//! The core passes every overlay two pointers: a [`Services`] table (the only way an overlay reaches
//! the console, the heap, the clock, the network and the file store) and a [`Context`] (the only state
//! an overlay may keep; overlays have no writable statics). Both are `#[repr(C)]`; [`ABI_VERSION`]
//! changes whenever either layout or the meaning of a field changes, and the loader refuses a blob
//! built against another version.
//!
//! Overlays never write flash directly: every write goes through the store services, which stage a
//! file beside the old one, check its digest, and commit a whole update with one atomic write.
#![no_std]
#![cfg_attr(target_arch = "xtensa", feature(asm_experimental_arch))]
#![deny(missing_docs)]

use core::ffi::c_void;

/// Version of [`Services`] and [`Context`]. Bump on any layout or semantic change.
pub const ABI_VERSION: u32 = 5;

/// Symbol name of every overlay's entry point (see [`OverlayEntry`]).
pub const ENTRY_SYMBOL: &str = "rota_overlay_entry";

/// Signature of an overlay's entry point: returns a status code or a phase verdict (see [`verdict`]).
pub type OverlayEntry = unsafe extern "C" fn(svc: *const Services, ctx: *mut Context) -> i32;

/// Status codes returned by services and overlay entries (negative: an error).
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// An argument was out of range (offset, length, alignment, name).
    pub const EINVAL: i32 = -1;
    /// The flash device reported an error.
    pub const EIO: i32 = -2;
    /// Out of memory.
    pub const ENOMEM: i32 = -3;
    /// Data read back did not match what was written, a digest or a record failed its check.
    pub const ECORRUPT: i32 = -4;
    /// No such file.
    pub const ENOENT: i32 = -5;
    /// No room left in the store.
    pub const ENOSPC: i32 = -6;
    /// The board has no network interface, or the network is not up.
    pub const ENODEV: i32 = -7;
    /// The connection is closed or was refused.
    pub const ECLOSED: i32 = -8;
    /// A write was not at the file's current end.
    pub const EORDER: i32 = -9;
    /// The store holds no valid config record (never provisioned, or both copies damaged).
    pub const ENOCONFIG: i32 = -10;
    /// A file name over [`NAME_MAX`](crate::NAME_MAX) bytes.
    pub const ENAMETOOLONG: i32 = -11;
    /// An empty name, a name with a NUL byte, or a rename onto itself.
    pub const EBADNAME: i32 = -12;
    /// A file that could never fit in the storage region.
    pub const EFBIG: i32 = -13;
    /// A config over [`CONFIG_MAX`](crate::CONFIG_MAX) bytes.
    pub const ETOOLONG: i32 = -14;
    /// A staged file was finished before all its bytes were written.
    pub const EINCOMPLETE: i32 = -15;
    /// A staged file's content does not have its announced SHA-256 (the staged file was dropped).
    pub const EDIGEST: i32 = -16;
    /// Flash read back after a write differs from what was written (the staged file was dropped).
    pub const EREADBACK: i32 = -17;
    /// A commit whose security version is lower than the one the device holds (anti-rollback);
    /// nothing was written.
    pub const EROLLBACK: i32 = -18;
    /// Not allowed to this caller: the generation on trial may be confirmed only by the app
    /// ([`CommitParams::needs_app`](crate::CommitParams::needs_app)), and not on a boot whose
    /// overlays were refused or failed.
    pub const EPERM: i32 = -19;

    /// What a status code means, in a few words (for logs: the core's, and the server's, which gets
    /// the code of a failed store operation in a `Failed` message).
    pub fn describe(code: i32) -> &'static str {
        match code {
            OK => "ok",
            EINVAL => "invalid argument",
            EIO => "flash operation failed",
            ENOMEM => "out of memory",
            ECORRUPT => "flash contents corrupt",
            ENOENT => "no such file",
            ENOSPC => "no space left",
            ENODEV => "no network",
            ECLOSED => "connection closed",
            EORDER => "write out of order",
            ENOCONFIG => "no valid config record",
            ENAMETOOLONG => "name too long",
            EBADNAME => "bad name",
            EFBIG => "file larger than the region",
            ETOOLONG => "config payload too long",
            EINCOMPLETE => "file incomplete",
            EDIGEST => "digest mismatch",
            EREADBACK => "read-back mismatch",
            EROLLBACK => "security version lower than the device's",
            EPERM => "not allowed to confirm",
            _ => "unknown status",
        }
    }
}

/// What `tick` and `provision` tell the core to do next (positive, so never confused with an error).
pub mod verdict {
    /// `tick`: call me again after the next period.
    pub const CONTINUE: i32 = 1;
    /// `tick`: connected; run `provision`.
    pub const PROVISION: i32 = 2;
    /// Start the application now (no update, deadline passed, abort key, or no network).
    pub const APP: i32 = 3;
    /// `provision`: an update was committed; reboot into it.
    pub const RESTART: i32 = 4;
}

/// Bits returned by [`NetPollFn`].
pub mod net {
    /// The interface has an IPv4 address.
    pub const HAS_IP: i32 = 1;
    /// The TCP connection is established.
    pub const CONNECTED: i32 = 2;
    /// The TCP connection was closed (by either side) or refused.
    pub const CLOSED: i32 = 4;

    /// [`NetParams::link`](crate::NetParams::link): TCP over the board's network interface.
    pub const LINK_TCP: u8 = 0;
    /// [`NetParams::link`](crate::NetParams::link): the console's serial line (`docs/protocol.md`,
    /// "Serial link"); the addressing fields are not used.
    pub const LINK_SERIAL: u8 = 1;
}

/// Writes `len` bytes at `buf` to the console.
pub type ConsoleWriteFn = unsafe extern "C" fn(core: *mut c_void, buf: *const u8, len: usize);
/// A byte from the console if one arrived (0..=255), else -1. Never blocks.
pub type ConsoleReadFn = unsafe extern "C" fn(core: *mut c_void) -> i32;
/// Allocates `size` bytes aligned to `align` from the core's heap; null on failure.
pub type HeapAllocFn =
    unsafe extern "C" fn(core: *mut c_void, size: usize, align: usize) -> *mut u8;
/// Frees a block returned by [`HeapAllocFn`] with the same `size` and `align`.
pub type HeapFreeFn =
    unsafe extern "C" fn(core: *mut c_void, ptr: *mut u8, size: usize, align: usize);
/// Milliseconds since boot (wraps after ~49 days).
pub type TimeMsFn = unsafe extern "C" fn(core: *mut c_void) -> u32;
/// Resets the device; never returns.
pub type ResetFn = unsafe extern "C" fn(core: *mut c_void) -> !;
/// Brings the network interface up with `params` (allocating its buffers); returns a status code.
pub type NetUpFn = unsafe extern "C" fn(core: *mut c_void, params: *const NetParams) -> i32;
/// Drives the network stack once; returns [`net`] bits, or [`status::ENODEV`] when it is down.
pub type NetPollFn = unsafe extern "C" fn(core: *mut c_void) -> i32;
/// Starts a TCP connection to `ip:port` (`ip` in network order); returns a status code.
pub type NetConnectFn =
    unsafe extern "C" fn(core: *mut c_void, ip: *const [u8; 4], port: u16) -> i32;
/// Queues up to `len` bytes for sending; returns the count queued (0 when full) or an error.
pub type NetSendFn = unsafe extern "C" fn(core: *mut c_void, buf: *const u8, len: usize) -> i32;
/// Reads up to `len` received bytes; returns the count (0 when none yet) or [`status::ECLOSED`].
pub type NetRecvFn = unsafe extern "C" fn(core: *mut c_void, buf: *mut u8, len: usize) -> i32;
/// Closes the connection and takes the interface down, freeing every network buffer.
pub type NetDownFn = unsafe extern "C" fn(core: *mut c_void);
/// Fills `out` with the `index`-th live file (`staged == 0`) or staged file (`staged == 1`);
/// returns [`status::OK`], [`status::ENOENT`] past the last one, or the store's error. The core
/// remembers where the last call stopped, so indexes asked in order cost one scan step each.
pub type FileInfoFn =
    unsafe extern "C" fn(core: *mut c_void, staged: u32, index: u32, out: *mut FileInfo) -> i32;
/// Reads from the live file `name` at `offset`; returns the byte count or an error.
pub type FileReadFn = unsafe extern "C" fn(
    core: *mut c_void,
    name: *const Name,
    offset: u32,
    buf: *mut u8,
    len: usize,
) -> i32;
/// Starts (or resumes) staging `name`; returns the offset to continue writing at, or an error.
pub type StageBeginFn = unsafe extern "C" fn(
    core: *mut c_void,
    name: *const Name,
    size: u32,
    digest: *const [u8; 32],
    version: u32,
) -> i32;
/// Appends `len` bytes at `offset` (which must be the staged file's current end); returns a status.
pub type StageWriteFn = unsafe extern "C" fn(
    core: *mut c_void,
    name: *const Name,
    offset: u32,
    buf: *const u8,
    len: usize,
) -> i32;
/// A store operation on one name (finish: check the digest; drop: discard the staged copy; delete:
/// stage a deletion); returns a status code.
pub type StageNameFn = unsafe extern "C" fn(core: *mut c_void, name: *const Name) -> i32;
/// Stages renaming the live file `from` to `to`; returns a status code.
pub type StageRenameFn =
    unsafe extern "C" fn(core: *mut c_void, from: *const Name, to: *const Name) -> i32;
/// Commits every verified staged file at once, with a new device config if `len > 0`, as `params`
/// say (security version, trial boots, who may confirm); returns the store's new generation, or an
/// error ([`status::EROLLBACK`] for a lower security version than the device holds: nothing is
/// written then).
pub type CommitFn = unsafe extern "C" fn(
    core: *mut c_void,
    config: *const u8,
    len: usize,
    params: *const CommitParams,
) -> i32;
/// Confirms the generation on trial (`docs/trial-boot.md`): one record write, after which it is
/// never rolled back. [`status::OK`] also when nothing is on trial (nothing is written then);
/// [`status::EPERM`] when the commit asked that only the app confirm and the caller is not the app,
/// or when an overlay of this boot was refused by the loader or failed (its updater does not work).
pub type ConfirmFn = unsafe extern "C" fn(core: *mut c_void) -> i32;

/// How a commit is to be trusted (what a signed release manifest says about it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitParams {
    /// The release's security version: the device refuses one lower than the highest it has
    /// committed ([`status::EROLLBACK`]) and keeps the highest, which never decreases.
    pub security_version: u32,
    /// Boots the new generation gets on trial: if that many boots end without a confirm, the next
    /// boot rolls back to the last confirmed generation. 0: confirmed at once (no trial).
    pub trial_limit: u8,
    /// Non-zero: only the app's [`Services::confirm`] confirms this generation (a release that
    /// changes the app); otherwise the overlays may confirm it too (a completed check-in).
    pub needs_app: u8,
    /// Zero.
    pub _reserved: [u8; 2],
}

impl CommitParams {
    /// Confirmed at once, security version 0: the behaviour before trial boots.
    pub const IMMEDIATE: CommitParams = CommitParams {
        security_version: 0,
        trial_limit: 0,
        needs_app: 0,
        _reserved: [0; 2],
    };
}

/// Why the core rolled a generation back ([`Trial::rollback_reason`]), and the phase numbers it
/// records with it ([`Trial::rollback_phase`]).
pub mod rollback {
    use crate::report::{Phase, PHASES};

    /// No rollback.
    pub const NONE: u8 = 0;
    /// A trial boot panicked (the core's panic handler, or a trap instruction: what a Rust panic
    /// is in firmware built with `-Cpanic=immediate-abort`).
    pub const PANIC: u8 = 1;
    /// A trial boot faulted (any other CPU exception: a load from an invalid address, ...).
    pub const FAULT: u8 = 2;
    /// The trial boots ended without a confirm and without a recorded panic or fault: a hang ended
    /// by a watchdog or a reset, a power cut, an app that returned without confirming.
    pub const UNCONFIRMED: u8 = 3;

    /// The phase number of the application: the heap report's numbers ([`Phase`]: boot 0, init 1,
    /// tick 2, provision 3) for the rest; 4 (`residue`) is not a phase anything runs in.
    pub const PHASE_APP: u8 = Phase::Residue as u8 + 1;

    /// What `reason` means, in a few words (`panicked`, `faulted`, `not confirmed`).
    pub fn describe(reason: u8) -> &'static str {
        match reason {
            NONE => "none",
            PANIC => "panicked",
            FAULT => "faulted",
            UNCONFIRMED => "not confirmed",
            _ => "unknown",
        }
    }

    /// The name of phase number `phase`: `boot`, `init`, `tick`, `provision` or `app` (`?` for
    /// any other number).
    pub fn phase_name(phase: u8) -> &'static str {
        match phase {
            PHASE_APP => crate::APP,
            p if p < Phase::Residue as u8 => PHASES[p as usize],
            _ => "?",
        }
    }
}

/// The boot's trial state, as the core found it at boot (after a rollback, if it made one): see
/// `docs/trial-boot.md`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trial {
    /// The committed generation this boot runs.
    pub generation: u32,
    /// The last confirmed generation: equal to `generation` unless that one is on trial.
    pub confirmed: u32,
    /// The highest security version the device has committed.
    pub security_version: u32,
    /// The last rollback's generations, from and to (0 and 0: none since the last commit).
    pub rollback_from: u32,
    /// See `rollback_from`.
    pub rollback_to: u32,
    /// Why it rolled back: a [`rollback`] reason ([`rollback::NONE`] if it did not).
    pub rollback_reason: u8,
    /// The phase the last trial boot ended in, for [`rollback::PANIC`] and [`rollback::FAULT`]
    /// (numbered as [`rollback::phase_name`] says); 0 otherwise.
    pub rollback_phase: u8,
    /// Boots counted on trial so far, this one included (0 when nothing is on trial).
    pub trials: u8,
    /// Non-zero: only the app's confirm confirms the generation on trial.
    pub needs_app: u8,
}

impl Trial {
    /// Whether this boot runs a generation on trial.
    pub fn on_trial(&self) -> bool {
        self.generation > self.confirmed
    }
}

/// The service table the core hands to every overlay.
#[repr(C)]
pub struct Services {
    /// Must equal [`ABI_VERSION`]; overlays may check it, the loader already did.
    pub abi_version: u32,
    /// Opaque core state, passed back as the first argument of every service.
    pub core: *mut c_void,
    /// See [`ConsoleWriteFn`].
    pub console_write: ConsoleWriteFn,
    /// See [`ConsoleReadFn`].
    pub console_read: ConsoleReadFn,
    /// See [`HeapAllocFn`].
    pub heap_alloc: HeapAllocFn,
    /// See [`HeapFreeFn`].
    pub heap_free: HeapFreeFn,
    /// See [`TimeMsFn`].
    pub time_ms: TimeMsFn,
    /// See [`ResetFn`].
    pub reset: ResetFn,
    /// See [`NetUpFn`].
    pub net_up: NetUpFn,
    /// See [`NetPollFn`].
    pub net_poll: NetPollFn,
    /// See [`NetConnectFn`].
    pub net_connect: NetConnectFn,
    /// See [`NetSendFn`].
    pub net_send: NetSendFn,
    /// See [`NetRecvFn`].
    pub net_recv: NetRecvFn,
    /// See [`NetDownFn`].
    pub net_down: NetDownFn,
    /// See [`FileInfoFn`].
    pub file_info: FileInfoFn,
    /// See [`FileReadFn`].
    pub file_read: FileReadFn,
    /// See [`StageBeginFn`].
    pub stage_begin: StageBeginFn,
    /// See [`StageWriteFn`].
    pub stage_write: StageWriteFn,
    /// Checks a staged file's digest (see [`StageNameFn`]).
    pub stage_finish: StageNameFn,
    /// Discards a staged file (see [`StageNameFn`]).
    pub stage_drop: StageNameFn,
    /// Stages the deletion of a live file (see [`StageNameFn`]).
    pub stage_delete: StageNameFn,
    /// See [`StageRenameFn`].
    pub stage_rename: StageRenameFn,
    /// See [`CommitFn`].
    pub commit: CommitFn,
    /// See [`ConfirmFn`].
    pub confirm: ConfirmFn,
}

pub use rota_limits::{APP, NAME_MAX};

/// A file name: 1 to [`NAME_MAX`] bytes (the store refuses one with a NUL byte). The one owned file-name type: overlays pass it
/// to the core's services, and the file store keeps it in its headers and hands it back.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    /// Number of bytes used.
    pub len: u8,
    /// The bytes; only the first `len` count.
    pub bytes: [u8; NAME_MAX],
}

impl Name {
    /// A name from `s`, or `None` if it is empty or too long (the store also refuses a NUL byte).
    pub fn new(s: &[u8]) -> Option<Name> {
        if s.is_empty() || s.len() > NAME_MAX {
            return None;
        }
        let mut bytes = [0; NAME_MAX];
        bytes[..s.len()].copy_from_slice(s);
        Some(Name {
            len: s.len() as u8,
            bytes,
        })
    }

    /// The name's bytes (an out-of-range `len` is clamped, never trusted).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(NAME_MAX)]
    }
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => core::fmt::Debug::fmt(s, f),
            Err(_) => core::fmt::Debug::fmt(self.as_bytes(), f),
        }
    }
}

/// One file of the store as overlays see it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileInfo {
    /// The file's name.
    pub name: Name,
    /// Size in bytes.
    pub size: u32,
    /// Version number the server gave it.
    pub version: u32,
    /// Staged files: bytes already written and kept (where a resumed transfer continues).
    pub done: u32,
    /// SHA-256 of the content.
    pub digest: [u8; 32],
}

/// How to bring the network up.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetParams {
    /// Static address, or all zero for DHCP.
    pub ip: [u8; 4],
    /// Prefix length of the static address.
    pub prefix: u8,
    /// Default gateway (static addressing).
    pub gateway: [u8; 4],
    /// Which link the connection runs over: [`net::LINK_TCP`] or [`net::LINK_SERIAL`]; the other
    /// services behave the same over either.
    pub link: u8,
    /// TCP receive window in bytes; 0 for the core's default (sized for streaming).
    pub rx_window: u16,
    /// A number that differs on every boot (the boot number): the local port and initial TCP
    /// sequence numbers derive from it, so a reconnect after a reboot is never mistaken for the old
    /// connection.
    pub seed: u32,
}

pub use rota_limits::{CONFIG_MAX, REPORT_MAX};

/// All state shared by the core and the overlays (luaOTA's `self` table).
#[repr(C)]
pub struct Context {
    /// This boot's number (persisted and incremented before anything else runs; never reused).
    pub boot_count: u32,
    /// When the boot started, in [`TimeMsFn`] milliseconds.
    pub boot_ms: u32,
    /// When the network was brought up (set by `init`).
    pub net_up_ms: u32,
    /// When the connection was started (set by `tick`).
    pub connect_ms: u32,
    /// Calls of `tick` so far.
    pub ticks: u32,
    /// Number of valid bytes in `config`.
    pub config_len: u32,
    /// The device config (the store's config payload; decoded by the overlays).
    pub config: [u8; CONFIG_MAX],
    /// Number of valid bytes in `report`.
    pub report_len: u32,
    /// The last boot's heap report, as the core persisted it (sent in the check-in).
    pub report: [u8; REPORT_MAX],
    /// This boot's trial state and the last rollback (the core fills it in at boot).
    pub trial: Trial,
}

impl Context {
    /// A context with everything zero.
    pub const fn new() -> Self {
        Self {
            boot_count: 0,
            boot_ms: 0,
            net_up_ms: 0,
            connect_ms: 0,
            ticks: 0,
            config_len: 0,
            config: [0; CONFIG_MAX],
            report_len: 0,
            report: [0; REPORT_MAX],
            trial: Trial {
                generation: 0,
                confirmed: 0,
                security_version: 0,
                rollback_from: 0,
                rollback_to: 0,
                rollback_reason: 0,
                rollback_phase: 0,
                trials: 0,
                needs_app: 0,
            },
        }
    }

    /// The valid part of `config`.
    pub fn config(&self) -> &[u8] {
        &self.config[..(self.config_len as usize).min(CONFIG_MAX)]
    }

    /// The valid part of `report`.
    pub fn report(&self) -> &[u8] {
        &self.report[..(self.report_len as usize).min(REPORT_MAX)]
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl Services {
    /// Writes `bytes` to the console.
    #[inline(always)]
    pub fn write(&self, bytes: &[u8]) {
        // SAFETY: the table comes from the core, which accepts any valid slice.
        unsafe { (self.console_write)(self.core, bytes.as_ptr(), bytes.len()) }
    }

    /// Writes `n` in decimal to the console (overlays carry no `core::fmt`).
    pub fn write_dec(&self, n: u32) {
        let mut buf = [0u8; 10];
        self.write(format_dec(n, &mut buf));
    }

    /// A byte from the console, if one arrived.
    #[inline(always)]
    pub fn read_key(&self) -> Option<u8> {
        // SAFETY: no arguments to misuse.
        let c = unsafe { (self.console_read)(self.core) };
        u8::try_from(c).ok()
    }

    /// Allocates `size` bytes aligned to `align`; null on failure.
    #[inline(always)]
    pub fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        // SAFETY: the core validates size and align.
        unsafe { (self.heap_alloc)(self.core, size, align) }
    }

    /// Frees a block from [`Services::alloc`].
    ///
    /// # Safety
    /// `ptr`, `size` and `align` must be exactly those of one live allocation.
    #[inline(always)]
    pub unsafe fn free(&self, ptr: *mut u8, size: usize, align: usize) {
        // SAFETY: the caller passes one live allocation, as this function requires.
        unsafe { (self.heap_free)(self.core, ptr, size, align) }
    }

    /// Milliseconds since boot.
    #[inline(always)]
    pub fn time_ms(&self) -> u32 {
        // SAFETY: no arguments to misuse.
        unsafe { (self.time_ms)(self.core) }
    }

    /// Resets the device.
    #[inline(always)]
    pub fn reset(&self) -> ! {
        // SAFETY: no arguments to misuse.
        unsafe { (self.reset)(self.core) }
    }

    /// Brings the network up; returns a status code.
    #[inline(always)]
    pub fn net_up(&self, params: &NetParams) -> i32 {
        // SAFETY: `params` is a valid reference.
        unsafe { (self.net_up)(self.core, params) }
    }

    /// Drives the network once; returns [`net`] bits or a negative status.
    #[inline(always)]
    pub fn net_poll(&self) -> i32 {
        // SAFETY: no arguments to misuse.
        unsafe { (self.net_poll)(self.core) }
    }

    /// Starts a TCP connection; returns a status code.
    #[inline(always)]
    pub fn net_connect(&self, ip: &[u8; 4], port: u16) -> i32 {
        // SAFETY: `ip` is a valid reference.
        unsafe { (self.net_connect)(self.core, ip, port) }
    }

    /// Queues bytes for sending; returns the count queued or a negative status.
    #[inline(always)]
    pub fn net_send(&self, buf: &[u8]) -> i32 {
        // SAFETY: `buf` is a valid slice.
        unsafe { (self.net_send)(self.core, buf.as_ptr(), buf.len()) }
    }

    /// Reads received bytes; returns the count or a negative status.
    #[inline(always)]
    pub fn net_recv(&self, buf: &mut [u8]) -> i32 {
        // SAFETY: `buf` is a valid writable slice.
        unsafe { (self.net_recv)(self.core, buf.as_mut_ptr(), buf.len()) }
    }

    /// Takes the network down and frees its buffers.
    #[inline(always)]
    pub fn net_down(&self) {
        // SAFETY: no arguments to misuse.
        unsafe { (self.net_down)(self.core) }
    }

    /// The `index`-th live (`staged == false`) or staged file: `Ok(None)` past the last one, or the
    /// store's error status (a flash failure is never taken for "no file"). Asking for the indexes in
    /// order costs one step of the store's scan each.
    pub fn file_info(&self, staged: bool, index: u32) -> Result<Option<FileInfo>, i32> {
        let mut out = core::mem::MaybeUninit::<FileInfo>::uninit();
        // SAFETY: `out` is valid for writes of one `FileInfo`.
        let rc = unsafe { (self.file_info)(self.core, u32::from(staged), index, out.as_mut_ptr()) };
        match rc {
            // SAFETY: on OK the core has written the whole `FileInfo`.
            status::OK => Ok(Some(unsafe { out.assume_init() })),
            status::ENOENT => Ok(None),
            e => Err(e),
        }
    }

    /// Reads the live file `name` at `offset`; returns the byte count or a negative status.
    #[inline(always)]
    pub fn file_read(&self, name: &Name, offset: u32, buf: &mut [u8]) -> i32 {
        // SAFETY: valid references and slice.
        unsafe { (self.file_read)(self.core, name, offset, buf.as_mut_ptr(), buf.len()) }
    }

    /// Starts or resumes staging; returns the offset to continue at, or a negative status.
    #[inline(always)]
    pub fn stage_begin(&self, name: &Name, size: u32, digest: &[u8; 32], version: u32) -> i32 {
        // SAFETY: valid references.
        unsafe { (self.stage_begin)(self.core, name, size, digest, version) }
    }

    /// Appends to a staged file; returns a status code.
    #[inline(always)]
    pub fn stage_write(&self, name: &Name, offset: u32, data: &[u8]) -> i32 {
        // SAFETY: valid references and slice.
        unsafe { (self.stage_write)(self.core, name, offset, data.as_ptr(), data.len()) }
    }

    /// Checks a staged file's digest; returns a status code.
    #[inline(always)]
    pub fn stage_finish(&self, name: &Name) -> i32 {
        // SAFETY: a valid reference.
        unsafe { (self.stage_finish)(self.core, name) }
    }

    /// Discards a staged file; returns a status code.
    #[inline(always)]
    pub fn stage_drop(&self, name: &Name) -> i32 {
        // SAFETY: a valid reference.
        unsafe { (self.stage_drop)(self.core, name) }
    }

    /// Stages the deletion of a live file; returns a status code.
    #[inline(always)]
    pub fn stage_delete(&self, name: &Name) -> i32 {
        // SAFETY: a valid reference.
        unsafe { (self.stage_delete)(self.core, name) }
    }

    /// Stages renaming the live file `from` to `to`; returns a status code.
    #[inline(always)]
    pub fn stage_rename(&self, from: &Name, to: &Name) -> i32 {
        // SAFETY: valid references.
        unsafe { (self.stage_rename)(self.core, from, to) }
    }

    /// Commits every verified staged file, with a new config when `config` is not empty, as
    /// `params` say; returns the new generation or a negative status ([`status::EROLLBACK`]: a
    /// lower security version than the device holds, nothing written).
    #[inline(always)]
    pub fn commit(&self, config: &[u8], params: &CommitParams) -> i32 {
        // SAFETY: `config` is a valid slice and `params` a valid reference.
        unsafe { (self.commit)(self.core, config.as_ptr(), config.len(), params) }
    }

    /// Confirms the generation on trial (nothing is written when none is); returns a status code
    /// ([`status::EPERM`] if only the app may confirm it and the caller is not the app).
    #[inline(always)]
    pub fn confirm(&self) -> i32 {
        // SAFETY: no arguments to misuse.
        unsafe { (self.confirm)(self.core) }
    }
}

/// The heap report the core persists at the end of the update phases and `provision` sends in the
/// next check-in: one fixed-size entry per phase.
pub mod report {
    use rota_limits::OVERLAYS;

    /// Phase names, indexed by [`PhaseStat::phase`]: the boot, each overlay, the residue.
    pub const PHASES: [&str; OVERLAYS.len() + 2] =
        ["boot", OVERLAYS[0], OVERLAYS[1], OVERLAYS[2], "residue"];

    /// The phases of a boot, in order: the number is the report's [`PhaseStat::phase`].
    #[repr(u8)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Phase {
        /// The core's own start (boot number, config).
        Boot = 0,
        /// The `init` overlay: the network comes up.
        Init = 1,
        /// The `tick` overlay: deadlines, the abort key, the connect.
        Tick = 2,
        /// The `provision` overlay: the check-in and the update.
        Provision = 3,
        /// Not a phase: the heap left in use when the update phases are over (must be 0).
        Residue = 4,
    }

    impl Phase {
        /// The overlay phases in boot order (each runs the blob of its name).
        pub const OVERLAYS: [Phase; OVERLAYS.len()] = [Phase::Init, Phase::Tick, Phase::Provision];

        /// The phase's name: the file name of its overlay, or `boot` / `residue`.
        pub const fn name(self) -> &'static str {
            PHASES[self as usize]
        }
    }
    /// Bytes per encoded entry.
    pub const ENTRY: usize = rota_limits::REPORT_ENTRY;

    /// One phase's figures (for `residue`, `used` holds the signed residue).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct PhaseStat {
        /// Index into [`PHASES`].
        pub phase: u8,
        /// Heap bytes in use at the end of the phase.
        pub used: u32,
        /// Peak heap bytes during the phase.
        pub peak: u32,
        /// Peak stack bytes during the phase.
        pub stack_peak: u32,
    }

    impl PhaseStat {
        /// Writes the entry into `out` (at least [`ENTRY`] bytes).
        pub fn encode(&self, out: &mut [u8]) {
            out[0] = self.phase;
            out[1..5].copy_from_slice(&self.used.to_le_bytes());
            out[5..9].copy_from_slice(&self.peak.to_le_bytes());
            out[9..13].copy_from_slice(&self.stack_peak.to_le_bytes());
        }

        /// Reads one entry; `None` if `b` is short.
        pub fn decode(b: &[u8]) -> Option<PhaseStat> {
            let w = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
            Some(PhaseStat {
                phase: *b.first()?,
                used: w(1)?,
                peak: w(5)?,
                stack_peak: w(9)?,
            })
        }
    }
}

/// Formats `n` in decimal into `buf` and returns the digits (shared by the core and the overlays, which
/// carry no `core::fmt`).
pub fn format_dec(n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Declares an overlay: exports `fn(&Services, &mut Context) -> i32` as [`ENTRY_SYMBOL`] and, on
/// bare-metal targets, a panic handler that traps (overlays cannot reach the console without `Services`).
#[macro_export]
macro_rules! overlay {
    ($main:path) => {
        /// The overlay entry point the loader calls.
        ///
        /// # Safety
        /// `svc` and `ctx` must be valid pointers provided by the resident core.
        #[no_mangle]
        pub unsafe extern "C" fn rota_overlay_entry(
            svc: *const $crate::Services,
            ctx: *mut $crate::Context,
        ) -> i32 {
            // SAFETY: the core passes a live table and the context it owns, exclusively, for
            // the call (the function's contract).
            unsafe { $main(&*svc, &mut *ctx) }
        }

        #[cfg(target_os = "none")]
        #[panic_handler]
        fn panic(_: &core::panic::PanicInfo) -> ! {
            $crate::trap()
        }
    };
}

/// Stops execution with an illegal instruction (the core's fault handler reports it).
#[inline(always)]
pub fn trap() -> ! {
    #[cfg(target_arch = "arm")]
    // SAFETY: `udf` raises a fault and never returns.
    unsafe {
        core::arch::asm!("udf #0", options(noreturn))
    }
    #[cfg(target_arch = "xtensa")]
    // SAFETY: `ill` raises an exception and never returns.
    unsafe {
        core::arch::asm!("ill", options(noreturn))
    }
    #[cfg(not(any(target_arch = "arm", target_arch = "xtensa")))]
    loop {
        core::hint::spin_loop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn service_table_layout_is_frozen_for_this_abi_version() {
        // Changing the table without bumping ABI_VERSION would let old overlays call the wrong service.
        let w = size_of::<usize>();
        assert_eq!(offset_of!(Services, core), w);
        assert_eq!(offset_of!(Services, console_write), 2 * w);
        assert_eq!(offset_of!(Services, net_up), 8 * w);
        assert_eq!(offset_of!(Services, commit), 22 * w);
        assert_eq!(offset_of!(Services, confirm), 23 * w);
        assert_eq!(size_of::<Services>(), 24 * w);
        assert_eq!(size_of::<CommitParams>(), 8);
        assert_eq!(offset_of!(CommitParams, trial_limit), 4);
        assert_eq!(offset_of!(CommitParams, needs_app), 5);
        assert_eq!(size_of::<Trial>(), 24);
        assert_eq!(offset_of!(Trial, rollback_reason), 20);
        assert_eq!(offset_of!(Trial, needs_app), 23);
        assert_eq!(size_of::<Name>(), 32);
        assert_eq!(size_of::<FileInfo>(), 76);
        assert_eq!(size_of::<NetParams>(), 16);
        assert_eq!(offset_of!(NetParams, link), 9);
        assert_eq!(offset_of!(Context, config), 24);
        assert_eq!(offset_of!(Context, report), 24 + CONFIG_MAX + 4);
        assert_eq!(offset_of!(Context, trial), 24 + CONFIG_MAX + 4 + REPORT_MAX);
        assert_eq!(size_of::<Context>(), 24 + CONFIG_MAX + 4 + REPORT_MAX + 24);
        assert_eq!(ABI_VERSION, 5);
    }

    #[test]
    fn names_are_bounded_and_never_read_past_their_field() {
        assert!(Name::new(b"").is_none());
        assert!(Name::new(&[b'a'; NAME_MAX + 1]).is_none());
        let mut n = Name::new(b"app").unwrap();
        assert_eq!(n.as_bytes(), b"app");
        n.len = 200;
        assert_eq!(n.as_bytes().len(), NAME_MAX);
    }

    #[test]
    fn rollback_reasons_and_phases_have_names() {
        assert_eq!(rollback::describe(rollback::PANIC), "panicked");
        assert_eq!(rollback::describe(rollback::FAULT), "faulted");
        assert_eq!(rollback::describe(rollback::UNCONFIRMED), "not confirmed");
        assert_eq!(rollback::phase_name(3), "provision");
        assert_eq!(rollback::phase_name(0), "boot");
        assert_eq!(rollback::phase_name(rollback::PHASE_APP), "app");
        assert_eq!(rollback::phase_name(4), "?");
        assert_eq!(
            status::describe(status::EROLLBACK),
            "security version lower than the device's"
        );
    }

    #[test]
    fn format_dec_covers_the_whole_range() {
        let mut buf = [0; 10];
        assert_eq!(format_dec(0, &mut buf), b"0");
        assert_eq!(format_dec(1024, &mut buf), b"1024");
        assert_eq!(format_dec(u32::MAX, &mut buf), b"4294967295");
    }
}
