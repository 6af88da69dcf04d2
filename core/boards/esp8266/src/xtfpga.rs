//! The xtfpga machine: QEMU's `-M lx60-nommu` board with `-cpu lx106`, the ESP8266's CPU core with
//! the board's peripherals (docs/boards-esp8266.md).
//!
//! The memory map is the sim machine's (`linker/esp8266-xtfpga.x` includes the sim script). What this
//! module adds, all in the board's uncached IO region at 0x90000000:
//! - [`uart`]: the 16550 UART at 0x9D050020 (registers 4 bytes apart), polled: the console.
//! - [`clock_hz`]: the FPGA register at 0x9D020004 that gives the CPU clock (CCOUNT's rate).
//! - [`storage`]: the flash window kept in a host file over semihosting, with `rota-hostflash`.
//! - [`nic`]: the OpenCores Ethernet MAC at 0x9D030000 (packet RAM 0x9D800000), QEMU's `open_eth`,
//!   through `rota-ethoc`: the network interface.

/// The network interface: the OpenCores Ethernet MAC's driver at the board's addresses.
pub type Nic = rota_ethoc::Ethoc<rota_ethoc::Mmio>;

/// The MAC address the board programs: QEMU's default for the first NIC (`52:54:00:12:34:56`, what
/// mps2-an385 reads from its LAN9118). The OpenCores MAC has no address of its own (`MAC_ADDR0/1`
/// reset to 0 in QEMU's model, whatever `-nic ...,mac=` says) and filters unicast frames against the
/// address it is programmed with, so this is the address the guest uses and receives on.
pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// Brings the Ethernet MAC up with [`MAC`] (reset, rings, receiver and transmitter on), or `None` if
/// the PHY does not report a link on the MII. Call once per boot.
///
/// QEMU adds the MAC to the board with a NIC on its command line (`-nic ...,model=open_eth`; without
/// any `-nic` it adds one on an unrestricted user network, so the harness always names one). With
/// `-nic none` there is no MAC: QEMU 7.2 reads its addresses as 0 without a fault, so the link bit
/// reads clear and this returns `None` (checked: `init` then reports no network interface).
pub fn nic() -> Option<Nic> {
    // SAFETY: the xtfpga board's MAC, and this is the only `Mmio` for it (called once per boot; a
    // soft reset starts the firmware afresh).
    let mut nic = rota_ethoc::Ethoc::new(unsafe { rota_ethoc::Mmio::xtfpga() }, MAC);
    matches!(nic.link_up(), Ok(true)).then_some(nic)
}

/// The FPGA register block: +0x0 build date, +0x4 CPU clock in Hz, +0x8 LEDs, +0xC switches.
const FPGA: usize = 0x9D02_0000;

/// The CPU clock the FPGA reports, in Hz (QEMU 7.2: 40 000 000 on every xtfpga board with the lx106
/// core, the rate CCOUNT counts at).
pub fn clock_hz() -> u32 {
    // SAFETY: an aligned read of the FPGA's clock register, which has no side effect.
    unsafe { core::ptr::read_volatile((FPGA + 0x4) as *const u32) }
}

/// The 16550 UART, polled (interrupts off), at the baud rate QEMU ignores.
pub mod uart {
    /// The register block; register `n` is at `BASE + 4 * n` (QEMU's `regshift` 2).
    const BASE: usize = 0x9D05_0020;
    /// Receive buffer (read) / transmit holding register (write).
    const RBR_THR: usize = 0;
    /// Interrupt enable.
    const IER: usize = 1;
    /// FIFO control (write).
    const FCR: usize = 2;
    /// Line control.
    const LCR: usize = 3;
    /// Line status.
    const LSR: usize = 5;
    /// LSR: a received byte is waiting.
    const LSR_DR: u32 = 0x01;
    /// LSR: the transmit holding register is empty.
    const LSR_THRE: u32 = 0x20;

    fn reg(n: usize) -> *mut u32 {
        (BASE + 4 * n) as *mut u32
    }

    /// Interrupts off, FIFOs on and cleared, 8 data bits, no parity, 1 stop bit.
    pub fn init() {
        // SAFETY: aligned 32-bit accesses to the 16550's registers.
        unsafe {
            core::ptr::write_volatile(reg(IER), 0);
            core::ptr::write_volatile(reg(FCR), 0x07);
            core::ptr::write_volatile(reg(LCR), 0x03);
        }
    }

    /// Sends `bytes`, waiting for room before each.
    pub fn write(bytes: &[u8]) {
        for &b in bytes {
            // SAFETY: aligned 32-bit accesses to the 16550's registers.
            unsafe {
                while core::ptr::read_volatile(reg(LSR)) & LSR_THRE == 0 {}
                core::ptr::write_volatile(reg(RBR_THR), u32::from(b));
            }
        }
    }

    /// A received byte, if one is waiting (never blocks).
    pub fn read() -> Option<u8> {
        // SAFETY: aligned 32-bit accesses to the 16550's registers; reading RBR takes the byte.
        unsafe {
            (core::ptr::read_volatile(reg(LSR)) & LSR_DR != 0)
                .then(|| core::ptr::read_volatile(reg(RBR_THR)) as u8)
        }
    }
}

/// The storage region: the flash window (`_flash_start.._flash_end`, 512 KB at 0x40280000) as NOR
/// flash over RAM, kept in the host file `storage=<path>` names on the semihosting command line.
pub mod storage {
    use crate::rt::symbols;
    use crate::semihosting::{self, open_flags, seek};
    use rota_hostflash::Backing;
    pub use rota_hostflash::Origin;

    /// The board's flash type.
    pub type Flash = rota_hostflash::Flash<&'static mut [u8], HostFile>;

    /// The storage file, an open host file descriptor.
    pub struct HostFile(u32);

    impl HostFile {
        /// Closes the file (before a soft reset: the next boot opens it again).
        pub fn close(self) {
            let _ = semihosting::close(self.0);
        }

        fn seek(&mut self, pos: u32) -> bool {
            semihosting::lseek(self.0, pos, seek::SET) == Ok(pos)
        }
    }

    impl Backing for HostFile {
        fn store(&mut self, offset: u32, mut bytes: &[u8]) -> bool {
            if !self.seek(offset) {
                return false;
            }
            while !bytes.is_empty() {
                match semihosting::write(self.0, bytes) {
                    Ok(n) if n > 0 => bytes = &bytes[n.min(bytes.len())..],
                    _ => return false,
                }
            }
            true
        }

        fn power_cut(&mut self) {
            semihosting::exit(rota_hostflash::POWER_CUT_EXIT)
        }
    }

    impl rota_hostflash::HostFile for HostFile {
        fn open(path_nul: &[u8]) -> Option<Self> {
            semihosting::open(path_nul, open_flags::RDWR, 0)
                .ok()
                .map(HostFile)
        }

        fn create(path_nul: &[u8]) -> Option<Self> {
            let flags = open_flags::RDWR | open_flags::CREATE;
            semihosting::open(path_nul, flags, 0o644).ok().map(HostFile)
        }

        fn length(&mut self) -> Option<usize> {
            semihosting::lseek(self.0, 0, seek::END)
                .ok()
                .map(|n| n as usize)
        }

        fn read_at(&mut self, pos: usize, buf: &mut [u8]) -> bool {
            if !self.seek(pos as u32) {
                return false;
            }
            let mut done = 0;
            while done < buf.len() {
                match semihosting::read(self.0, &mut buf[done..]) {
                    Ok(n) if n > 0 => done += n,
                    _ => return false,
                }
            }
            true
        }
    }

    /// Builds the flash over the window as `cmdline` says; also returns where its contents came from.
    /// Call once.
    pub fn open(cmdline: &[u8]) -> (Flash, Origin) {
        let start = symbols::flash_start();
        let len = symbols::flash_end() - start;
        // SAFETY: the linker script reserves the window for the store; this is its only reference
        // (called once per boot).
        let region = unsafe { core::slice::from_raw_parts_mut(start as *mut u8, len) };
        rota_hostflash::open(region, cmdline)
    }
}
