//! The real ESP8266 (`chip`): what the board sets up itself once the ROM bootloader has started
//! it, and the clock assumption that rests on (docs/boards-esp8266.md, "The chip").
//!
//! UNTESTED: there is no chip here. All of this is built and checked (esptool `image-info`, the
//! disassembly, the lints), never run.
//!
//! - [`CRYSTAL_HZ`], [`CLOCK_HZ`]: the clock the ROM leaves, which nothing here changes.
//! - [`uart`]: UART0 at 115200 8N1 through the `esp8266` PAC's registers, polled: the console, and
//!   the serial link's line when the device config says `link = Serial` (the core does the framing;
//!   the board only moves bytes).
//! - The watchdog: stopped at start by ROM `ets_wdt_disable` (`rt::rota_rt_chip_init`) and never
//!   started again, so the ROM's long flash operations (`SPIEraseSector`, 4 KB at a time) need no
//!   feeding: that routine clears the enable bit (bit 0) of the hardware watchdog's control
//!   register at 0x60000900 (the PAC's `WDT.wdt_ctl`), after a last feed, and disarms the ROM's own
//!   software watchdog (its timer and interrupt), as published disassemblies of the ROM show. No
//!   SDK runs to enable it again, and this firmware writes no watchdog register. The bootloader of
//!   the Arduino core (`eboot`), which runs straight from the ROM as this firmware does, brackets
//!   its erase-and-copy of a whole image through the same ROM routines with `ets_wdt_disable()`
//!   and `ets_wdt_enable()`.

/// The crystal every clock figure here assumes: 26 MHz, the crystal of ESP-12 modules and of
/// NodeMCU-style boards (their ROM boot messages at 74,880 baud are the sign of one). The firmware
/// cannot measure it without a second clock; with a 40 MHz crystal every clock would run 40/26
/// faster than assumed (UART0 at 177,384 baud, `time::now_ms` 1.54 times fast).
pub const CRYSTAL_HZ: u32 = 26_000_000;

/// The CPU clock, which CCOUNT counts, and the APB clock UART0 divides, as the ROM bootloader
/// leaves them and this firmware keeps them (it never reprograms the PLL, which Espressif's SDK
/// does at start to reach 80 MHz): twice the crystal, 52 MHz.
///
/// Public facts behind it: esptool computes the crystal of an ESP8266 in ROM state as
/// `baud × UART_CLKDIV / 2` (`XTAL_CLK_DIVIDER = 2`, `get_crystal_freq`), i.e. the UART's clock is
/// twice the crystal; bootloaders that run straight from the ROM (rboot; esp-open-rtos's, whose
/// `clocks.h` says the CPU clock is twice the crystal inside the bootloader and the UART's clock
/// the same) compute their UART divisors from 52 MHz. The ROM's own divisor, about 694, is
/// 80 MHz / 115200: it assumes a 40 MHz crystal, which with 26 MHz gives the familiar 74,880 baud
/// (52 MHz / 694).
pub const CLOCK_HZ: u32 = 2 * CRYSTAL_HZ;

/// UART0 (0x60000000) through the `esp8266` PAC: 115200 8N1, polled (its interrupts off), TX
/// waiting for room in the FIFO, RX read from the FIFO count without blocking.
///
/// No interrupt-driven receive is needed: the RX FIFO holds 128 bytes, and the serial link's
/// credit rule (`rota-serial-link`) lets the host send a frame only when the device has asked for
/// it and is polling the line for it, so nothing arrives while the device writes flash with its
/// CPU away from the UART (and the cache off). A key typed on the console is one byte.
pub mod uart {
    use super::CLOCK_HZ;
    use crate::rt::ccount;
    use esp8266::uart0::RegisterBlock;

    /// The line's rate.
    pub const BAUD: u32 = 115_200;
    /// `UART_CLKDIV` for [`BAUD`] from [`CLOCK_HZ`], to the nearest: 451, so the line runs at
    /// 52 MHz / 451 = 115,299 baud, 0.09 % fast (a UART tolerates a few percent).
    pub const DIVISOR: u32 = (CLOCK_HZ + BAUD / 2) / BAUD;
    /// Bytes the TX FIFO holds.
    const FIFO_LEN: u8 = 128;
    /// `UART_CONF0.bit_num` for 8 data bits.
    const EIGHT_BITS: u8 = 3;
    /// `UART_CONF0.stop_bit_num` for 1 stop bit.
    const ONE_STOP_BIT: u8 = 1;
    /// Bits on the line per character: start, 8 data, stop.
    const BITS_PER_CHAR: u32 = 10;

    fn regs() -> &'static RegisterBlock {
        // SAFETY: UART0's register block, always mapped. The board is the only user of UART0 and
        // runs with interrupts off, so no access interleaves with another.
        unsafe { &*esp8266::UART0::ptr() }
    }

    /// Sets UART0 to [`BAUD`] 8N1 with its interrupts off. First lets the ROM's last boot message
    /// leave at the ROM's rate: waits for the TX FIFO to empty, then for one character time at the
    /// divisor the ROM left (the byte in the shift register; the CPU runs from the UART's clock,
    /// so that is `10 × divisor` CCOUNT cycles). Then empties the RX FIFO of anything received at
    /// the old rate. Call once, at boot.
    pub fn init() {
        let uart = regs();
        while uart.uart_status.read().txfifo_cnt().bits() != 0 {}
        let char_cycles = BITS_PER_CHAR * uart.uart_clkdiv.read().uart_clkdiv().bits();
        let start = ccount();
        while ccount().wrapping_sub(start) < char_cycles {}
        // SAFETY: writing 0 to UART_INT_ENA only masks the UART's interrupt sources.
        uart.uart_int_ena.write(|w| unsafe { w.bits(0) });
        // SAFETY: DIVISOR fits the 20-bit field (451).
        uart.uart_clkdiv
            .write(|w| unsafe { w.uart_clkdiv().bits(DIVISOR) });
        uart.uart_conf0.modify(|_, w| {
            // SAFETY: the values the fields define for 8 data bits and 1 stop bit.
            unsafe {
                w.bit_num()
                    .bits(EIGHT_BITS)
                    .stop_bit_num()
                    .bits(ONE_STOP_BIT)
            }
            .parity_en()
            .clear_bit()
            .rxfifo_rst()
            .set_bit()
        });
        uart.uart_conf0.modify(|_, w| w.rxfifo_rst().clear_bit());
    }

    /// Writes `bytes`, waiting for room in the TX FIFO before each (two places kept free, as
    /// Espressif's UART driver does).
    pub fn write(bytes: &[u8]) {
        let uart = regs();
        for &b in bytes {
            while uart.uart_status.read().txfifo_cnt().bits() >= FIFO_LEN - 2 {}
            // SAFETY: any byte is a valid value of the FIFO's 8-bit field.
            uart.uart_fifo
                .write(|w| unsafe { w.rxfifo_write_byte().bits(b) });
        }
    }

    /// A received byte, if the RX FIFO holds one (never blocks).
    pub fn read() -> Option<u8> {
        let uart = regs();
        (uart.uart_status.read().rxfifo_cnt().bits() != 0)
            .then(|| uart.uart_fifo.read().rxfifo_rd_byte().bits())
    }
}
