//! Running the esp8266 board's xtfpga firmware (`build/esp8266/rota-xtfpga.elf`) under
//! `qemu-system-xtensa -M lx60-nommu -cpu lx106`: the console on the board's 16550 UART (QEMU's
//! `-serial`), exit and the storage file over semihosting.
//!
//! The storage region (the flash window at 0x40280000) lives in a host file named on the semihosting
//! command line (`storage=<path>`), so it survives guest resets and separate runs; a `-device loader`
//! image seeds a file that does not exist yet; `cut=<n>` cuts power at flash operation `n` (the
//! power-cut build, `build/esp8266/rota-xtfpga-power-cut.elf`).
//!
//! The network: the board's OpenCores Ethernet MAC (`model=open_eth`), always on QEMU's restricted user
//! network, as on mps2-an385 ([`crate::net::user_nic`]): with a server port, the guest's 10.0.2.100:8266
//! is forwarded to `rota-bridge <port>`, which connects to 127.0.0.1 only; it reaches nothing else.
//! Without any `-nic` QEMU would add the MAC on an unrestricted user network, so the command always
//! names one (`-nic none` when [`XtfpgaRun::no_nic`]).

use crate::Run;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The QEMU machine: the xtfpga board's lx60 variant without MMU.
pub const QEMU_MACHINE: &str = "lx60-nommu";
/// QEMU's model of the board's Ethernet MAC (hw/net/opencores_eth.c).
pub const NIC_MODEL: &str = "open_eth";
/// Where the storage region is mapped (the chip's flash window, flash offset 0x80000).
pub const FLASH_WINDOW: u32 = 0x4028_0000;

/// How to run one xtfpga guest.
#[derive(Clone, Debug, Default)]
pub struct XtfpgaRun {
    /// The firmware ELF.
    pub elf: PathBuf,
    /// A raw image loaded into the flash window at start (`-device loader`; a storage file that
    /// exists wins over it).
    pub image: Option<PathBuf>,
    /// The storage file (created by the guest from the window if missing); `None`: the window is plain
    /// memory.
    pub storage: Option<PathBuf>,
    /// Where the UART's output goes: this file (`-serial file:`); `None`: QEMU's stdio, as the
    /// semihosting output (unless [`XtfpgaRun::line`] is set).
    pub serial: Option<PathBuf>,
    /// The UART both ways on this Unix socket, which QEMU creates and waits on until a client
    /// (`rota-bridge serial`) connects ([`crate::serial`]); not with [`XtfpgaRun::serial`].
    pub line: Option<PathBuf>,
    /// Cut power at this flash operation (from 0; needs the power-cut build).
    pub cut: Option<u32>,
    /// The host port on 127.0.0.1 that guest connections to 10.0.2.100:8266 reach; `None`: no forward
    /// (the MAC is still there, on a restricted user network).
    pub server_port: Option<u16>,
    /// No NIC at all (`-nic none`): the board finds no interface and `init` starts the application.
    pub no_nic: bool,
    /// Further words for the semihosting command line (no commas or spaces).
    pub args: Vec<String>,
    /// `-icount shift=<n>`: QEMU's virtual clock advances 2^n ns per instruction, so CCOUNT (which
    /// follows that clock at the board's 40 MHz) counts instructions, 2^n * 0.04 ticks each; `None`:
    /// the clock follows the host's time.
    pub icount: Option<u32>,
}

impl XtfpgaRun {
    /// A run of `elf` with no image, storage file, serial file, cut, forward, arguments or
    /// instruction counting; the MAC on a restricted user network.
    pub fn new(elf: impl Into<PathBuf>) -> Self {
        XtfpgaRun {
            elf: elf.into(),
            ..XtfpgaRun::default()
        }
    }

    /// The QEMU command line.
    pub fn command(&self) -> Command {
        let serial = match (&self.line, &self.serial) {
            (Some(_), Some(_)) => panic!("the UART goes to a file or a socket, not both"),
            (Some(_), None) => format!("chardev:{}", crate::serial::CHARDEV_ID),
            (None, Some(path)) => {
                let p = path.display().to_string();
                assert!(!p.contains(','), "serial file path unusable: {p}");
                format!("file:{p}")
            }
            (None, None) => "stdio".to_string(),
        };
        let nic = match self.no_nic {
            true => "none".to_string(),
            false => crate::net::user_nic(Some(NIC_MODEL), self.server_port),
        };
        let mut cmd = Command::new("qemu-system-xtensa");
        cmd.args(["-M", QEMU_MACHINE, "-cpu", "lx106"])
            .args(["-display", "none", "-monitor", "none", "-serial", &serial])
            .args([
                "-semihosting-config",
                &crate::semihosting_config(
                    "enable=on",
                    self.storage.as_deref(),
                    self.cut,
                    &self.args,
                ),
            ])
            .args(["-nic", &nic])
            .arg("-kernel")
            .arg(&self.elf);
        if let Some(shift) = self.icount {
            cmd.args(["-icount", &format!("shift={shift}")]);
        }
        if let Some(line) = &self.line {
            cmd.args(["-chardev", &crate::serial::chardev_value(line)]);
        }
        if let Some(image) = &self.image {
            let i = image.display().to_string();
            assert!(!i.contains(','), "image path unusable in -device: {i}");
            cmd.args([
                "-device",
                &format!("loader,file={i},addr={FLASH_WINDOW:#x},force-raw=on"),
            ]);
        }
        cmd
    }

    /// Runs the guest until it exits or `limit` passes.
    pub fn run(&self, limit: Duration) -> Run {
        crate::run_limited(&self.command(), limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(r: &XtfpgaRun) -> Vec<String> {
        r.command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn command_line_has_the_machine_storage_image_and_serial() {
        let mut r = XtfpgaRun::new("/fw.elf");
        let plain = args(&r);
        assert!(plain.windows(2).any(|w| w == ["-M", "lx60-nommu"]));
        assert!(plain.windows(2).any(|w| w == ["-cpu", "lx106"]));
        assert!(plain.windows(2).any(|w| w == ["-serial", "stdio"]));
        assert!(plain.contains(&"enable=on,arg=rota".into()));
        assert!(!plain.contains(&"-device".into()));
        assert!(!plain.contains(&"-icount".into()));
        assert!(plain
            .windows(2)
            .any(|w| w == ["-nic", "user,restrict=on,model=open_eth"]));
        r.storage = Some("/tmp/s.bin".into());
        r.image = Some("/tmp/i.bin".into());
        r.serial = Some("/tmp/uart.txt".into());
        r.args = vec!["cut=3".into()];
        let a = args(&r);
        assert!(a.contains(&"enable=on,arg=rota,arg=storage=/tmp/s.bin,arg=cut=3".into()));
        assert!(a.contains(&"loader,file=/tmp/i.bin,addr=0x40280000,force-raw=on".into()));
        assert!(a.windows(2).any(|w| w == ["-serial", "file:/tmp/uart.txt"]));
        r.no_nic = true;
        assert!(args(&r).windows(2).any(|w| w == ["-nic", "none"]));
        r.icount = Some(5);
        assert!(args(&r).windows(2).any(|w| w == ["-icount", "shift=5"]));
        r.serial = None;
        r.line = Some("/tmp/uart.sock".into());
        let a = args(&r);
        assert!(a.windows(2).any(|w| w == ["-serial", "chardev:line"]));
        assert!(a.windows(2).any(|w| w
            == [
                "-chardev",
                "socket,id=line,path=/tmp/uart.sock,server=on,wait=on"
            ]));
    }

    #[test]
    fn storage_and_cut_reach_the_semihosting_command_line() {
        let mut r = XtfpgaRun::new("/fw.elf");
        r.storage = Some("/tmp/s.bin".into());
        r.cut = Some(7);
        assert!(args(&r).contains(&"enable=on,arg=rota,arg=storage=/tmp/s.bin,arg=cut=7".into()));
        assert_eq!(args(&r).iter().filter(|w| *w == "-nic").count(), 1);
    }
}
