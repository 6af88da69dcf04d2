//! Trial boots through `rota_core::run` on the host (`docs/trial-boot.md`), with a board double:
//! a generation committed on trial through the core's `commit` service is rolled back by the boot
//! after its last trial boot, which prints the rollback line once; a confirm stops the count; a
//! panic on a trial boot is recorded and named in the line. Nothing runs here (the blobs are not
//! executable: the boots end in refusals); the QEMU tests run real overlays.
use core::cell::RefCell;
use rota_abi::{rollback, status, CommitParams, Context, Name};
use rota_core::heap::AccountingHeap;
use rota_core::services::{self, CoreState};
use rota_core::stack::Stack;
use rota_core::{record, Board, Isa, Memory};
use rota_memflash::MemFlash;
use rota_store::Store;
use std::sync::Mutex;

const REGION: usize = 64 * 1024;

/// The trial hooks are one per process: the tests that boot take turns.
static TURN: Mutex<()> = Mutex::new(());

struct Host {
    flash: MemFlash<Vec<u8>>,
    out: RefCell<String>,
    /// Stand in for a panic in the app: on the core's first `app: ` line (the app phase), call the
    /// trial hook as a panic handler does, then unwind, never returning to the core.
    panic_in_app: bool,
}

impl Board for Host {
    type Flash = MemFlash<Vec<u8>>;
    type Nic = rota_net::NoNic;
    const ISA: Isa = Isa::Lx106;
    fn console_write(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        self.out.borrow_mut().push_str(&text);
        if self.panic_in_app && text.starts_with("app: ") {
            // SAFETY: as a panic handler: the unwind below never returns to the core, and nothing
            // uses the flash during this call.
            let recorded = unsafe { rota_core::trial::ended(rollback::PANIC) };
            panic!("the app panicked (recorded: {recorded})");
        }
    }
    fn console_read(&mut self) -> Option<u8> {
        None
    }
    fn flash(&mut self) -> &mut Self::Flash {
        &mut self.flash
    }
    fn nic(&mut self) -> Option<&mut rota_net::NoNic> {
        None
    }
    fn mac(&self) -> [u8; 6] {
        [2, 0, 0, 0, 0, 1]
    }
    fn now_ms(&mut self) -> u32 {
        0
    }
    fn reset(&mut self) -> ! {
        panic!("reset")
    }
    fn sync_icache(&mut self) {
        panic!("nothing may be prepared for execution in these tests")
    }
}

static HEAP: AccountingHeap = AccountingHeap::empty();

fn host(flash: Vec<u8>) -> Host {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let mem = Box::leak(vec![0u64; 1024].into_boxed_slice());
        // SAFETY: leaked memory used by nothing else.
        unsafe { HEAP.init(mem.as_mut_ptr() as *mut u8, 8192) };
    });
    Host {
        flash: MemFlash::new(flash),
        out: RefCell::new(String::new()),
        panic_in_app: false,
    }
}

/// Boots once (`run`, as a board's main does); returns the console.
fn boot(board: &mut Host) -> String {
    let stack_mem = Box::leak(vec![0u32; 16].into_boxed_slice());
    let stack = Stack {
        bottom: stack_mem.as_mut_ptr(),
        top: stack_mem.as_mut_ptr(),
    };
    let arena = Box::leak(vec![0u32; 2048].into_boxed_slice());
    board.out.borrow_mut().clear();
    let mem = Memory {
        arena,
        stack,
        statics: 100,
    };
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rota_core::run(board, &HEAP, mem);
    }));
    if let Err(e) = run {
        let why = e
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "?".into());
        assert!(why.starts_with("the app panicked"), "{why}");
        board.out.borrow_mut().push_str(&format!("<{why}>\n"));
    }
    board.out.borrow().clone()
}

/// Generation 1: `app` (bytes, not a blob: the boot refuses it, nothing runs) and `data`, with a
/// config; then generation 2 committed on trial through the core's `commit` service, as
/// `provision` commits: `app` replaced.
fn on_trial(params: CommitParams) -> Host {
    let mut payload = [0u8; record::PAYLOAD_MAX];
    let n = record::join(b"device config", &[], &mut payload).unwrap();
    let mut store = Store::new(MemFlash::new(vec![0xFF; REGION]));
    store.format(&payload[..n]).unwrap();
    for (name, data) in [("app", vec![1u8; 3000]), ("data", vec![2u8; 100])] {
        stage(&mut store, name, &data);
    }
    store.commit(None, &CommitParams::IMMEDIATE).unwrap();
    stage(&mut store, "app", &[3u8; 5000]);
    let mut board = host(store.into_inner().contents().to_vec());
    let mut state = CoreState::new(&mut board, &HEAP, 8192);
    assert_eq!(services::table(&mut state).commit(&[], &params), 2);
    board
}

fn stage(store: &mut Store<MemFlash<Vec<u8>>>, name: &str, data: &[u8]) {
    let digest = rota_blob::sha256(data);
    store
        .stage_begin(name.as_bytes(), data.len() as u32, &digest, 1)
        .unwrap();
    store.stage_write(name.as_bytes(), 0, data).unwrap();
    store.stage_finish(name.as_bytes()).unwrap();
}

fn trial(limit: u8) -> CommitParams {
    CommitParams {
        trial_limit: limit,
        needs_app: 1,
        ..CommitParams::IMMEDIATE
    }
}

/// The committed generation, the confirmed one and the size of the live `app`.
fn state(board: &mut Host) -> (u32, u32, u32) {
    let mut store = Store::new(&mut board.flash);
    let i = store.config(&mut []).unwrap();
    let app = store.find(b"app").unwrap().expect("app").size;
    (i.generation, i.confirmed, app)
}

#[test]
fn three_unconfirmed_boots_then_the_fourth_reverts_printing_the_line_once() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut board = on_trial(trial(3));
    assert_eq!(state(&mut board), (2, 1, 5000));
    for n in 1..=3 {
        let out = boot(&mut board);
        assert!(
            out.contains(&format!(
                "trial: generation 2 on trial, boot {n} of 3 (confirmed: 1)\n"
            )),
            "{out}"
        );
        assert!(!out.contains("rollback"), "{out}");
    }
    let out = boot(&mut board);
    assert_eq!(
        out.matches("rollback: generation 2 -> 1 (not confirmed in 3 boots)\n")
            .count(),
        1,
        "{out}"
    );
    assert!(!out.contains("trial: "), "{out}");
    assert_eq!(state(&mut board), (1, 1, 3000), "the old app is back");
    // The rollback stays in the record for the next check-ins, and in the context.
    let mut ctx = Context::new();
    record::start_boot(&mut board, &mut ctx).unwrap();
    let t = ctx.trial;
    assert_eq!((t.generation, t.confirmed, t.trials), (1, 1, 0));
    assert_eq!((t.rollback_from, t.rollback_to), (2, 1));
    assert_eq!(t.rollback_reason, rollback::UNCONFIRMED);
    for _ in 0..3 {
        let out = boot(&mut board);
        assert!(
            !out.contains("rollback") && !out.contains("trial: "),
            "{out}"
        );
    }
}

#[test]
fn a_confirm_by_the_app_stops_the_count() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut board = on_trial(trial(2));
    boot(&mut board);
    {
        // `provision` may not confirm what needs the app: refused, nothing written.
        let before = board.flash.contents().to_vec();
        let mut state = CoreState::new(&mut board, &HEAP, 8192);
        state.set_phase(rota_core::Phase::Provision as u8);
        assert_eq!(services::table(&mut state).confirm(), status::EPERM);
        assert_eq!(board.flash.contents(), &before[..]);
    }
    let mut state = CoreState::new(&mut board, &HEAP, 8192);
    state.set_phase(rollback::PHASE_APP);
    let svc = services::table(&mut state);
    assert_eq!(svc.confirm(), status::OK);
    assert_eq!(svc.confirm(), status::OK, "again: nothing to do");
    for _ in 0..6 {
        let out = boot(&mut board);
        assert!(
            !out.contains("rollback") && !out.contains("trial: "),
            "{out}"
        );
    }
    assert_eq!(state_of(&mut board), (2, 2, 5000));
}

fn state_of(board: &mut Host) -> (u32, u32, u32) {
    state(board)
}

#[test]
fn without_needs_app_an_overlay_may_confirm() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut board = on_trial(CommitParams {
        needs_app: 0,
        ..trial(2)
    });
    boot(&mut board);
    let mut state = CoreState::new(&mut board, &HEAP, 8192);
    state.set_phase(rota_core::Phase::Provision as u8);
    assert_eq!(services::table(&mut state).confirm(), status::OK);
    assert_eq!(state_of(&mut board), (2, 2, 5000));
}

#[test]
fn a_panic_in_the_app_on_a_trial_boot_is_recorded_and_named_in_the_rollback() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut board = on_trial(trial(2));
    board.panic_in_app = true;
    for _ in 0..2 {
        let out = boot(&mut board);
        assert!(out.contains("<the app panicked (recorded: true)>"), "{out}");
    }
    let out = boot(&mut board);
    assert_eq!(
        out.matches("rollback: generation 2 -> 1 (app panicked)\n")
            .count(),
        1,
        "{out}"
    );
    // Not on trial any more: a panic records nothing.
    assert!(
        out.contains("<the app panicked (recorded: false)>"),
        "{out}"
    );
    let mut ctx = Context::new();
    record::start_boot(&mut board, &mut ctx).unwrap();
    assert_eq!(ctx.trial.rollback_reason, rollback::PANIC);
    assert_eq!(ctx.trial.rollback_phase, rollback::PHASE_APP);
    assert_eq!(state_of(&mut board), (1, 1, 3000));
}

#[test]
fn a_lower_security_version_is_refused_by_the_commit_service() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut board = on_trial(CommitParams {
        security_version: 7,
        ..trial(2)
    });
    let name = Name::new(b"data").unwrap();
    let mut state = CoreState::new(&mut board, &HEAP, 8192);
    let svc = services::table(&mut state);
    assert_eq!(svc.stage_delete(&name), status::OK);
    let low = CommitParams {
        security_version: 6,
        ..CommitParams::IMMEDIATE
    };
    assert_eq!(svc.commit(&[], &low), status::EROLLBACK);
    assert_eq!(
        svc.commit(
            &[],
            &CommitParams {
                security_version: 7,
                ..low
            }
        ),
        3
    );
}
