//! What the system tests over TCP (`system.rs`) and over the serial line (`serial.rs`) share: one
//! `#[test]` per machine for each test body, and reading a run's console.
use rota_emu::Run;

/// One `#[test]` per machine for each test body (a function taking the machine).
macro_rules! on_both_machines {
    ($($name:ident),* $(,)?) => {
        mod mps2 {
            $(#[test]
            fn $name() {
                super::$name(rota_emu::Machine::Mps2An385)
            })*
        }
        mod xtfpga {
            $(#[test]
            fn $name() {
                super::$name(rota_emu::Machine::Esp8266Xtfpga)
            })*
        }
    };
}

/// The number after `prefix` (up to the next space) on each console line that starts with it.
pub fn numbers(run: &Run, prefix: &str) -> Vec<u64> {
    run.console
        .lines()
        .filter_map(|l| l.strip_prefix(prefix)?.split(' ').next()?.parse().ok())
        .collect()
}

/// The application versions that ran, in boot order.
pub fn app_versions(run: &Run) -> Vec<u64> {
    numbers(run, "app: version ")
}

/// No fault, panic, refused blob or used-up stack in the run (the bridge's log, if any, shown with it).
pub fn assert_no_fault(run: &Run) {
    for bad in ["hard fault", "panic", "refused: "] {
        assert!(
            !run.console.contains(bad),
            "unexpected `{bad}`:\n{}\n{}",
            run.console,
            run.log
        );
    }
    if let Some(l) = run.stack_exhausted() {
        panic!("phase {} used up the stack:\n{}", l.phase, run.console);
    }
}
