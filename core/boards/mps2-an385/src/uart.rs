//! CMSDK APB UART0 of the MPS2 AN385: polled transmit, non-blocking receive.

const BASE: usize = 0x4000_4000;
const DATA: *mut u32 = BASE as *mut u32;
const STATE: *const u32 = (BASE + 0x4) as *const u32;
const CTRL: *mut u32 = (BASE + 0x8) as *mut u32;
const BAUDDIV: *mut u32 = (BASE + 0x10) as *mut u32;
/// STATE bit: transmit buffer full.
const TX_FULL: u32 = 1;
/// STATE bit: receive buffer full (a byte is waiting).
const RX_FULL: u32 = 1 << 1;
/// CTRL bit: transmitter enable.
const TX_ENABLE: u32 = 1;
/// CTRL bit: receiver enable.
const RX_ENABLE: u32 = 1 << 1;

/// UART0, transmitter and receiver enabled.
pub struct Uart;

impl Uart {
    /// Enables the transmitter (without it QEMU prints nothing) and the receiver.
    pub fn new() -> Self {
        // SAFETY: valid MMIO registers of this board.
        unsafe {
            BAUDDIV.write_volatile(16);
            CTRL.write_volatile(TX_ENABLE | RX_ENABLE);
            // Reading DATA is harmless on the hardware; QEMU's model then tells its main loop that the
            // UART takes input again, so the first key typed arrives at once instead of up to 1 s later.
            let _ = DATA.read_volatile();
        }
        Uart
    }

    /// The next received byte, if one is waiting (never blocks).
    pub fn read(&mut self) -> Option<u8> {
        // SAFETY: as above.
        unsafe { (STATE.read_volatile() & RX_FULL != 0).then(|| DATA.read_volatile() as u8) }
    }
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl rota_core::report::Console for Uart {
    /// Writes bytes, waiting while the transmit buffer is full.
    fn print(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // SAFETY: as above.
            unsafe {
                while STATE.read_volatile() & TX_FULL != 0 {}
                DATA.write_volatile(u32::from(b));
            }
        }
    }
}
