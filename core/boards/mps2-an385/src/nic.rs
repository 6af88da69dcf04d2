//! The LAN9118 at 0x4020_0000, as a static driver (a few bytes in `.bss`; its frame buffer comes
//! from the heap while the network is in use).

use rota_lan9118::{Lan9118, Regs};

/// Base address of the LAN9118 on the AN385.
pub const BASE: usize = 0x4020_0000;

/// The board's LAN9118 registers (zero-sized, so the static driver is all zeros and lands in `.bss`).
pub struct An385Lan;

impl Regs for An385Lan {
    fn read(&mut self, offset: u32) -> u32 {
        // SAFETY: the LAN9118 register block of this board; offsets come from the driver.
        unsafe { ((BASE + offset as usize) as *const u32).read_volatile() }
    }

    fn write(&mut self, offset: u32, value: u32) {
        // SAFETY: as in `read`.
        unsafe { ((BASE + offset as usize) as *mut u32).write_volatile(value) }
    }
}

/// The board's network interface.
pub type Nic = Lan9118<An385Lan>;

static mut NIC: Nic = Lan9118::new(An385Lan);

/// Brings the LAN9118 up with the address QEMU gave it (`-nic ...,mac=`; its EEPROM's) and returns it
/// with that address, or `None` if the chip does not answer.
///
/// # Safety
/// Call once: the returned reference is the only one to the static driver.
pub unsafe fn take() -> Option<(&'static mut Nic, [u8; 6])> {
    // SAFETY: the caller's promise: no other reference exists.
    let nic = unsafe { &mut *core::ptr::addr_of_mut!(NIC) };
    let mac = nic.mac_address().ok()?;
    nic.init(mac).ok()?;
    Some((nic, mac))
}
