//! The board as the resident core sees it: [`rota_core::Board`] over the console, the flash window,
//! the network interface (the xtfpga board's Ethernet MAC; none on the sim and the chip), CCOUNT
//! time, reset, the instruction-cache sync, and the flash window's mapping for running in place.

use crate::{console, rt, time};
use rota_core::stack::Stack;

/// The storage region's driver: NOR flash over the window (sim), the ROM's SPI routines (chip).
#[cfg(not(feature = "xtfpga"))]
pub type Flash = crate::flash::Flash;
/// The storage region's driver: RAM flash written through to the `storage=` host file.
#[cfg(feature = "xtfpga")]
pub type Flash = crate::xtfpga::storage::Flash;

/// The network interface: none on the sim machine; on the chip the WiFi would need Espressif's SDK
/// (docs/esp8266-wifi.md), so a chip checks in over its serial port (`link = Serial`). Without
/// either, the update phases find no network and the application starts.
#[cfg(not(feature = "xtfpga"))]
pub type Nic = rota_net::NoNic;
/// The network interface: the xtfpga board's OpenCores Ethernet MAC ([`crate::xtfpga::Nic`]).
#[cfg(feature = "xtfpga")]
pub type Nic = crate::xtfpga::Nic;

/// The ESP8266 board (sim, xtfpga or chip, per the cargo feature).
pub struct Esp8266 {
    /// The storage region (the flash window).
    pub flash: Flash,
    /// The network interface, if the machine has one and it came up.
    nic: Option<Nic>,
    /// The MAC address of that interface.
    mac: [u8; 6],
}

/// Instruction RAM and memory-mapped flash: only aligned 32-bit loads are allowed there on the chip.
const WORD_ONLY: core::ops::Range<usize> = 0x4000_0000..0x4040_0000;

impl Esp8266 {
    /// Takes the board (on the chip, UART0 goes to 115200 8N1 first). Call once.
    #[cfg(not(feature = "xtfpga"))]
    pub fn take() -> Self {
        #[cfg(feature = "chip")]
        crate::chip::uart::init();
        Esp8266 {
            flash: Flash::take(),
            nic: None,
            // Locally administered; the chip's own MAC would come from its eFuses with a WiFi driver.
            mac: [0x02, 0x00, 0x82, 0x66, 0x00, 0x01],
        }
    }

    /// Takes the board: the UART, CCOUNT's rate from the FPGA, the storage the semihosting command
    /// line names (`storage=<path>`; without it the window is plain memory; `cut=<n>` cuts power at
    /// flash operation `n` in a `power-cut` build, and exits with 2 in any other), and the Ethernet
    /// MAC. Call once.
    #[cfg(feature = "xtfpga")]
    pub fn take() -> Self {
        use crate::xtfpga::{self, storage};
        xtfpga::uart::init();
        time::set_ccount_hz(xtfpga::clock_hz());
        let mut line = [0u8; 320];
        let cmdline = crate::semihosting::cmdline(&mut line).unwrap_or(&[]);
        let (flash, origin) = storage::open(cmdline);
        match origin {
            storage::Origin::Failed => {
                console::write(b"storage: cannot open the storage file; using memory\n")
            }
            storage::Origin::CutUnsupported => {
                console::write(b"storage: cut= needs a build with power-cut injection\n");
                crate::exit(2)
            }
            _ => {}
        }
        Esp8266 {
            flash,
            nic: xtfpga::nic(),
            mac: xtfpga::MAC,
        }
    }

    /// The storage region's driver and the network interface (if any) at once, for a program that
    /// drives both itself (the `tcp_copy` example) rather than through the core.
    pub fn flash_and_nic(&mut self) -> (&mut Flash, Option<&mut Nic>) {
        (&mut self.flash, self.nic.as_mut())
    }

    /// The overlay arena, as words: IRAM allows only aligned 32-bit stores on the chip.
    pub fn arena(&mut self) -> &'static mut [u32] {
        let start = rt::symbols::arena_start();
        let len = (rt::symbols::arena_end() - start) / 4;
        // SAFETY: the linker reserves the arena for this use only; `take` is called once.
        unsafe { core::slice::from_raw_parts_mut(start as *mut u32, len) }
    }

    /// The heap region (DRAM between `.bss` and the stack) as (start, size).
    pub fn heap(&self) -> (*mut u8, usize) {
        let start = rt::symbols::heap_start();
        (start as *mut u8, rt::symbols::heap_end() - start)
    }

    /// The stack, for painting.
    pub fn stack(&self) -> Stack {
        Stack {
            bottom: rt::symbols::stack_end() as *mut u32,
            top: rt::symbols::stack_start() as *mut u32,
        }
    }
}

impl rota_core::Board for Esp8266 {
    type Flash = Flash;
    type Nic = Nic;
    const ISA: rota_core::Isa = rota_core::Isa::Lx106;

    fn console_write(&mut self, bytes: &[u8]) {
        // Strings in IRAM or flash (the overlays', the core's own `.rodata`): read those by words,
        // which the chip allows there (its byte loads would each go through the LoadStoreError
        // emulation).
        if WORD_ONLY.contains(&(bytes.as_ptr() as usize)) {
            // SAFETY: the slice is readable; widening to whole words stays inside the same region.
            unsafe { console::write_from_word_memory(bytes.as_ptr(), bytes.len()) }
        } else {
            console::write(bytes)
        }
    }

    fn console_read(&mut self) -> Option<u8> {
        console::read()
    }

    fn nic(&mut self) -> Option<&mut Nic> {
        self.nic.as_mut()
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn flash(&mut self) -> &mut Flash {
        &mut self.flash
    }

    fn now_ms(&mut self) -> u32 {
        time::now_ms() as u32
    }

    fn reset(&mut self) -> ! {
        // The next boot opens the storage file again: close this one (the file is up to date).
        #[cfg(feature = "xtfpga")]
        if let Some(file) = self.flash.backing().take() {
            file.close();
        }
        crate::reset()
    }

    fn sync_icache(&mut self) {
        rt::isync()
    }

    fn xip_base(&self) -> Option<u32> {
        // The flash window is executable on every machine (mapped through the cache on the chip, RAM
        // under QEMU): blobs too large for the arena run in place there.
        Some(rt::symbols::flash_start() as u32)
    }
}
