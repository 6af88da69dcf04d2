//! A tiny stateless overlay: calls a service through a table the core passes in, with constants
//! (a string, a table of strings) that need load-base relocation.
#![no_std]
#![no_main]

/// The experiment's service table (the real one is rota-abi's).
#[repr(C)]
pub struct Services {
    /// Must match [`ABI_VERSION`].
    pub version: u32,
    /// Writes `len` bytes at `ptr` (which may point into the overlay itself) to the console.
    pub print: extern "C" fn(ptr: *const u8, len: usize) -> i32,
}

/// The service-table version this overlay was built against.
pub const ABI_VERSION: u32 = 1;

/// A constant table of pointers: each entry is an absolute address, i.e. an R_XTENSA_32 in .rodata.
static GREETINGS: [&str; 3] = [
    "overlay: hello through the service table\n",
    "overlay: second line, picked from a table of pointers\n",
    "overlay: third line\n",
];

#[inline(never)]
fn greet(svc: &Services, which: usize) -> i32 {
    let msg = GREETINGS[which % GREETINGS.len()];
    (svc.print)(msg.as_ptr(), msg.len())
}

/// The overlay's entry: `svc` points at [`Services`], `ctx` at a `u32` counter the core owns.
///
/// # Safety
/// `svc` and `ctx` must be valid as described.
#[no_mangle]
pub unsafe extern "C" fn rota_overlay_entry(svc: *const u8, ctx: *mut u8) -> i32 {
    // SAFETY: per the contract above.
    let svc = unsafe { &*(svc as *const Services) };
    if svc.version != ABI_VERSION {
        return -1;
    }
    let ctx = ctx as *mut u32;
    // SAFETY: `ctx` is a valid, aligned u32 owned by the core.
    let calls = unsafe { ctx.read_volatile() };
    // SAFETY: as above.
    unsafe { ctx.write_volatile(calls + 1) };
    let mut written = 0;
    for i in 0..2 {
        written += greet(svc, calls as usize + i);
    }
    written
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
