//! Runs rota firmware under QEMU with a storage image and reads what it prints; [`system`] runs the
//! whole system (server, bridge, device with persistent flash), [`mitm`] tampers with it; [`net`] and
//! [`xtfpga`] build the command lines of the mps2-an385 and the esp8266 xtfpga machines; [`serial`]
//! runs either with its link over the console UART and `rota-bridge serial`, [`line`] damages that
//! line.
//!
//! The build products come from `make firmware images` in `$ROTA_BUILD` (default: `build/` at the
//! workspace root). Tests that need them fail with a message naming the make target when they are missing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::Write;

pub mod line;
pub mod mitm;
pub mod net;
pub mod serial;
pub mod system;
pub mod xtfpga;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A board the firmware runs on under emulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `qemu-system-arm -M mps2-an385` (Cortex-M3).
    Mps2An385,
    /// `qemu-system-xtensa -M sim -cpu lx106` (ESP8266 CPU).
    Esp8266Sim,
    /// `qemu-system-xtensa -M lx60-nommu -cpu lx106` (ESP8266 CPU on QEMU's xtfpga board: 16550 UART
    /// console, storage file over semihosting, OpenCores Ethernet MAC).
    Esp8266Xtfpga,
}

/// Address where each machine's storage region is loaded.
impl Machine {
    /// Storage region address in the guest.
    pub fn storage_addr(self) -> u32 {
        match self {
            Machine::Mps2An385 => 0x0030_0000,
            Machine::Esp8266Sim | Machine::Esp8266Xtfpga => 0x4028_0000,
        }
    }

    /// How the machine's core runs a blob with relocations that is too large for its arena, if it
    /// does: in place from the storage region, mapped for execution at its storage address
    /// (`Board::xip_base`), relocated for its address there as it is installed
    /// (`Board::RELOCATE_IN_PLACE`: the LX106, whose arena is 8 KB of IRAM, the linker script's
    /// `_arena_start.._arena_end`). `None` on mps2-an385, whose core runs only relocation-free blobs
    /// in place. What a storage image for the machine must know to store a blob as the core would.
    pub fn in_place(self) -> Option<rota_image::InPlace> {
        match self {
            Machine::Mps2An385 => None,
            Machine::Esp8266Sim | Machine::Esp8266Xtfpga => Some(rota_image::InPlace {
                mapped_base: self.storage_addr(),
                arena: 8192,
            }),
        }
    }

    /// Firmware ELF in the build directory.
    pub fn firmware(self) -> PathBuf {
        match self {
            Machine::Mps2An385 => artifact("mps2-an385/rota.elf"),
            Machine::Esp8266Sim => artifact("esp8266/rota-sim.elf"),
            Machine::Esp8266Xtfpga => artifact("esp8266/rota-xtfpga.elf"),
        }
    }

    /// The firmware ELF built with power-cut injection (`cut=<n>`), for the power-cut tests: the
    /// firmware `make` ships has none. The sim machine has no storage file, so no such build.
    pub fn power_cut_firmware(self) -> PathBuf {
        match self {
            Machine::Mps2An385 => artifact("mps2-an385/rota-power-cut.elf"),
            Machine::Esp8266Xtfpga => artifact("esp8266/rota-xtfpga-power-cut.elf"),
            Machine::Esp8266Sim => panic!("the esp8266 sim build has no power-cut injection"),
        }
    }

    /// The line the resident core prints first at every boot on this machine.
    pub fn banner(self) -> &'static str {
        match self {
            Machine::Mps2An385 => "rota core on mps2-an385",
            Machine::Esp8266Sim => "rota core on esp8266 (sim)",
            Machine::Esp8266Xtfpga => "rota core on esp8266 (xtfpga)",
        }
    }

    /// Whether the overlay arena is data RAM (mps2-an385) or instruction RAM (the ESP8266's IRAM),
    /// which a whole-device data RAM figure leaves out.
    pub fn arena_is_data_ram(self) -> bool {
        matches!(self, Machine::Mps2An385)
    }

    /// Directory of this machine's packed overlays.
    pub fn isa_dir(self) -> &'static str {
        match self {
            Machine::Mps2An385 => "thumbv7m",
            Machine::Esp8266Sim | Machine::Esp8266Xtfpga => "lx106",
        }
    }
}

/// The `-semihosting-config` value: `base`, then `arg=rota` and one `arg=` per word of the guest's
/// command line as rota-hostflash reads it: `storage=<path>`, `cut=<n>`, then `args` (QEMU joins them
/// with spaces).
pub(crate) fn semihosting_config(
    base: &str,
    storage: Option<&Path>,
    cut: Option<u32>,
    args: &[String],
) -> String {
    let mut words: Vec<String> = Vec::new();
    if let Some(s) = storage {
        words.push(format!("storage={}", s.display()));
    }
    if let Some(c) = cut {
        words.push(format!("cut={c}"));
    }
    words.extend(args.iter().cloned());
    let mut semi = format!("{base},arg=rota");
    for w in &words {
        assert!(
            !w.contains([',', ' ']),
            "semihosting words cannot hold commas or spaces: {w:?}"
        );
        semi.push_str(",arg=");
        semi.push_str(w);
    }
    semi
}

/// The build directory.
pub fn build_dir() -> PathBuf {
    std::env::var_os("ROTA_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../build"))
}

/// A host program `cargo build` put in the profile directory that holds the running executable (tests
/// run from below it: `deps/`, or `build/<pkg>/<hash>/out/`).
pub fn beside_exe(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A build product; panics with the make target to run if it is missing.
pub fn artifact(rel: &str) -> PathBuf {
    let p = build_dir().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `make firmware images fixtures` first",
        p.display()
    );
    p
}

/// A packed overlay of `machine`'s ISA.
pub fn blob(machine: Machine, name: &str) -> Vec<u8> {
    std::fs::read(artifact(&format!("{}/{name}.blob", machine.isa_dir()))).expect("read blob")
}

/// What one emulated boot printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    /// Everything the guest printed.
    pub console: String,
    /// The emulator's exit code (`None` if killed by the time limit).
    pub status: Option<i32>,
    /// What the host's side logged: `rota-bridge serial`'s stderr ([`serial`]); empty otherwise.
    pub log: String,
}

impl Run {
    /// The heap report lines, in order.
    pub fn heap_lines(&self) -> Vec<HeapLine> {
        self.console.lines().filter_map(HeapLine::parse).collect()
    }

    /// The heap line of `phase`.
    pub fn phase(&self, phase: &str) -> Option<HeapLine> {
        self.heap_lines().into_iter().find(|l| l.phase == phase)
    }

    /// The RAM map from the first `ram statics=.. arena=.. heap=.. stack=..` line.
    pub fn ram(&self) -> Option<Ram> {
        self.console.lines().find_map(Ram::parse)
    }

    /// The highest whole-device data RAM use of `phase` on `machine` over every boot of the run:
    /// statics, the arena where it is data RAM, the phase's heap peak and its stack peak.
    /// Panics if a phase used up the stack ([`Run::stack_exhausted`]): its figure would be a floor.
    pub fn peak_ram(&self, machine: Machine, phase: &str) -> Option<u64> {
        let ram = self.ram()?;
        if let Some(l) = self.stack_exhausted() {
            panic!(
                "phase {} used up the {}-byte stack:\n{}",
                l.phase, ram.stack, self.console
            );
        }
        self.heap_lines()
            .iter()
            .filter(|l| l.phase == phase)
            .map(|l| ram.data_ram(machine, l))
            .max()
    }

    /// The first heap line whose stack peak is the whole stack: the paint's last word was
    /// overwritten, so the stack ran out (anything deeper went below it, unseen, into the heap).
    pub fn stack_exhausted(&self) -> Option<HeapLine> {
        let stack = self.ram()?.stack;
        self.heap_lines()
            .into_iter()
            .find(|l| l.stack_peak >= stack)
    }

    /// The `heap residue=<n>` value.
    pub fn residue(&self) -> Option<i64> {
        self.console
            .lines()
            .find_map(|l| l.strip_prefix("heap residue=")?.trim().parse().ok())
    }

    /// The load address of an overlay from `overlay <name> at 0x<hex> ...`.
    pub fn placed_at(&self, name: &str) -> Option<u32> {
        let prefix = format!("overlay {name} at 0x");
        self.console.lines().find_map(|l| {
            let hex = l.strip_prefix(&prefix)?.split_whitespace().next()?;
            u32::from_str_radix(hex, 16).ok()
        })
    }
}

/// The `ram ...` line: how the board's RAM is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ram {
    /// Bytes of statics.
    pub statics: u64,
    /// Bytes of the overlay arena.
    pub arena: u64,
    /// Bytes of heap.
    pub heap: u64,
    /// Bytes of stack.
    pub stack: u64,
}

impl Ram {
    /// Parses `ram statics=<n> arena=<n> heap=<n> stack=<n>` exactly.
    pub fn parse(line: &str) -> Option<Ram> {
        let mut it = line.trim_end().strip_prefix("ram ")?.split(' ');
        let mut num = |key: &str| -> Option<u64> {
            it.next()?
                .strip_prefix(key)?
                .strip_prefix('=')?
                .parse()
                .ok()
        };
        Some(Ram {
            statics: num("statics")?,
            arena: num("arena")?,
            heap: num("heap")?,
            stack: num("stack")?,
        })
    }

    /// The whole device's data RAM during the phase of `line` on `machine`: statics, the arena if
    /// it is data RAM there, the phase's heap peak and its stack peak.
    pub fn data_ram(&self, machine: Machine, line: &HeapLine) -> u64 {
        let arena = if machine.arena_is_data_ram() {
            self.arena
        } else {
            0
        };
        self.statics + arena + line.peak + line.stack_peak
    }
}

/// One `heap phase=...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapLine {
    /// Phase name.
    pub phase: String,
    /// Heap bytes in use.
    pub used: u64,
    /// Heap bytes free.
    pub free: u64,
    /// Peak heap use during the phase.
    pub peak: u64,
    /// Arena bytes used by the phase's overlay.
    pub arena: u64,
    /// Peak stack depth during the phase.
    pub stack_peak: u64,
}

impl HeapLine {
    /// Parses `heap phase=<p> used=<n> free=<n> peak=<n> arena=<n> stack_peak=<n>` exactly.
    pub fn parse(line: &str) -> Option<HeapLine> {
        let mut it = line.trim_end().strip_prefix("heap ")?.split(' ');
        let mut field = |key: &str| {
            it.next()?
                .strip_prefix(key)?
                .strip_prefix('=')
                .map(str::to_owned)
        };
        let phase = field("phase")?;
        let mut num = |key: &str| field(key)?.parse::<u64>().ok();
        let line = HeapLine {
            used: num("used")?,
            free: num("free")?,
            peak: num("peak")?,
            arena: num("arena")?,
            stack_peak: num("stack_peak")?,
            phase,
        };
        Some(line)
    }
}

/// Boots `machine` with `storage` loaded at its storage address (no network: the xtfpga machine runs
/// without a NIC; nothing persists); kills the guest after `limit`.
pub fn boot(machine: Machine, storage: &[u8], limit: Duration) -> Run {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(storage).expect("write storage image");
    let loader = format!(
        "loader,file={},addr={:#x},force-raw=on",
        file.path().display(),
        machine.storage_addr()
    );
    let qemu = |program: &str, args: &[&str]| {
        let mut c = Command::new(program);
        c.args(args)
            .args(["-nographic", "-monitor", "none", "-kernel"])
            .arg(machine.firmware())
            .args(["-device", &loader]);
        c
    };
    let cmd = match machine {
        Machine::Mps2An385 => qemu(
            "qemu-system-arm",
            &[
                "-M",
                "mps2-an385",
                "-semihosting-config",
                "enable=on,target=native",
            ],
        ),
        Machine::Esp8266Sim => qemu(
            "qemu-system-xtensa",
            &[
                "-M",
                "sim",
                "-cpu",
                "lx106",
                "-semihosting-config",
                "enable=on",
            ],
        ),
        Machine::Esp8266Xtfpga => {
            let mut run = xtfpga::XtfpgaRun::new(machine.firmware());
            run.image = Some(file.path().to_path_buf());
            run.no_nic = true;
            run.command()
        }
    };
    run_limited(&cmd, limit)
}

/// `cmd` under `timeout`: killed after `limit` (at least a second); its exit status is then 124.
pub(crate) fn under_timeout(cmd: &Command, limit: Duration) -> Command {
    let mut c = Command::new("timeout");
    c.arg(limit.as_secs().max(1).to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    c
}

/// Runs an emulator command under `timeout`, with nothing on its console input; kills it after `limit`.
pub fn run_limited(cmd: &Command, limit: Duration) -> Run {
    let out = under_timeout(cmd, limit)
        .stdin(Stdio::null())
        .output()
        .expect("run qemu (make setup installs it)");
    let status = out.status.code().filter(|&c| c != 124);
    let mut console = String::from_utf8_lossy(&out.stdout).into_owned();
    console.push_str(&String::from_utf8_lossy(&out.stderr));
    Run {
        console,
        status,
        log: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_line_parses_exactly_the_documented_form() {
        let l =
            HeapLine::parse("heap phase=init used=1 free=2 peak=3 arena=4 stack_peak=5").unwrap();
        assert_eq!(
            (
                l.phase.as_str(),
                l.used,
                l.free,
                l.peak,
                l.arena,
                l.stack_peak
            ),
            ("init", 1, 2, 3, 4, 5)
        );
        assert!(HeapLine::parse("heap phase=init used=1 free=2 peak=3 arena=4").is_none());
        assert!(
            HeapLine::parse("heap phase=init used=x free=2 peak=3 arena=4 stack_peak=5").is_none()
        );
        assert!(HeapLine::parse("heap residue=0").is_none());
        assert_eq!(
            Ram::parse("ram statics=1 arena=2 heap=3 stack=4"),
            Some(Ram {
                statics: 1,
                arena: 2,
                heap: 3,
                stack: 4
            })
        );
        assert_eq!(Ram::parse("ram statics=1 arena=2 heap=3"), None);
    }

    #[test]
    fn a_stack_peak_as_deep_as_the_stack_is_reported_as_used_up() {
        let run = |peak: u32| Run {
            console: format!(
                "ram statics=64 arena=0 heap=100 stack=10240\n\
                 heap phase=init used=0 free=100 peak=10 arena=0 stack_peak=900\n\
                 heap phase=provision used=0 free=100 peak=10 arena=0 stack_peak={peak}\n"
            ),
            status: Some(0),
            log: String::new(),
        };
        assert_eq!(run(10236).stack_exhausted(), None);
        assert_eq!(
            run(10236).peak_ram(Machine::Mps2An385, "provision"),
            Some(64 + 10 + 10236)
        );
        let used_up = run(10240).stack_exhausted().expect("used up");
        assert_eq!(
            (used_up.phase.as_str(), used_up.stack_peak),
            ("provision", 10240)
        );
        let panicked = std::panic::catch_unwind(|| run(10240).peak_ram(Machine::Mps2An385, "init"));
        assert!(
            panicked.is_err(),
            "a figure over a used-up stack is refused"
        );
    }
}
