//! `rota_core::run` on the host with a board double: the paths that execute nothing (no config, a
//! refused blob), the persisted boot number and heap report. Overlays that run are tested under QEMU.
use core::cell::RefCell;
use rota_abi::report::PhaseStat;
use rota_abi::{status, Context};
use rota_core::heap::AccountingHeap;
use rota_core::services::{self, CoreState};
use rota_core::stack::Stack;
use rota_core::{record, Board, Isa, Memory, Outcome, Phase};
use rota_loader::LoadError;
use rota_memflash::MemFlash;
use rota_store::{CommitParams, Store};

const REGION: usize = 64 * 1024;

struct Host {
    flash: MemFlash<Vec<u8>>,
    out: RefCell<String>,
}

impl Board for Host {
    type Flash = MemFlash<Vec<u8>>;
    type Nic = rota_net::NoNic;
    const ISA: Isa = Isa::Lx106;
    fn console_write(&mut self, bytes: &[u8]) {
        self.out
            .borrow_mut()
            .push_str(&String::from_utf8_lossy(bytes));
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

/// Boots once; returns the outcome, the console and the flash afterwards.
fn boot(storage: Vec<u8>) -> (Outcome, String, Vec<u8>) {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let mem = Box::leak(vec![0u64; 1024].into_boxed_slice());
        // SAFETY: leaked memory used by nothing else.
        unsafe { HEAP.init(mem.as_mut_ptr() as *mut u8, 8192) };
    });
    let stack_mem = Box::leak(vec![0u32; 16].into_boxed_slice());
    let stack = Stack {
        bottom: stack_mem.as_mut_ptr(),
        top: stack_mem.as_mut_ptr(),
    };
    let arena = Box::leak(vec![0u32; 2048].into_boxed_slice());
    let mut board = Host {
        flash: MemFlash::new(storage),
        out: RefCell::new(String::new()),
    };
    let mem = Memory {
        arena,
        stack,
        statics: 100,
    };
    let outcome = rota_core::run(&mut board, &HEAP, mem);
    let flash = board.flash.contents().to_vec();
    (outcome, board.out.into_inner(), flash)
}

/// A formatted store with a config and the given files.
fn provisioned(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    provisioned_with(b"device config", files)
}

/// A formatted store with `config` and the given files.
fn provisioned_with(config: &[u8], files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut payload = [0u8; record::PAYLOAD_MAX];
    let n = record::join(config, &[], &mut payload).unwrap();
    let mut store = Store::new(MemFlash::new(vec![0xFF; REGION]));
    store.format(&payload[..n]).unwrap();
    for (name, data) in files {
        let digest = rota_blob::sha256(data);
        store
            .stage_begin(name.as_bytes(), data.len() as u32, &digest, 1)
            .unwrap();
        store.stage_write(name.as_bytes(), 0, data).unwrap();
        store.stage_finish(name.as_bytes()).unwrap();
    }
    store.commit(None, &CommitParams::IMMEDIATE).unwrap();
    store.into_inner().contents().to_vec()
}

fn config_of(flash: Vec<u8>) -> (u32, Vec<u8>) {
    let mut store = Store::new(MemFlash::new(flash));
    let mut payload = [0u8; record::PAYLOAD_MAX];
    let info = store.config(&mut payload).unwrap();
    (info.boot_count, payload[..info.len].to_vec())
}

#[test]
fn an_unprovisioned_device_starts_its_app_path_without_touching_flash() {
    let (outcome, out, flash) = boot(vec![0xFF; REGION]);
    assert_eq!(outcome, Outcome::Unprovisioned);
    assert!(out.contains("store: no valid config record"), "{out}");
    assert!(out.contains("heap residue=0\n"), "{out}");
    assert!(out.contains("app: not found; nothing to run\n"), "{out}");
    assert!(
        out.starts_with("ram statics=100 arena=8192 heap=8192 stack=0\n"),
        "{out}"
    );
    assert!(flash.iter().all(|&b| b == 0xFF), "nothing may be written");
}

#[test]
fn each_boot_persists_a_new_number_and_the_heap_report() {
    let (outcome, out, flash) = boot(provisioned(&[]));
    assert_eq!(outcome, Outcome::Refused(Phase::Init, LoadError::NotFound));
    assert!(out.contains("boot 1\n"), "{out}");
    assert!(
        out.contains("overlay init refused: not found; starting app\n"),
        "{out}"
    );
    let (count, payload) = config_of(flash.clone());
    assert_eq!(count, 1);
    let (config, report) = record::split(&payload).unwrap();
    assert_eq!(config, b"device config", "the config survives");
    // boot, init (refused: not run, no entry) and the residue.
    assert_eq!(report.len(), 2 * rota_abi::report::ENTRY, "{report:?}");
    let (_, out, flash) = boot(flash);
    assert!(out.contains("boot 2\n"), "{out}");
    assert_eq!(config_of(flash).0, 2);
}

#[test]
fn a_corrupt_blob_is_refused_with_its_reason_and_never_prepared() {
    let image: Vec<u8> = (0..64).collect();
    let mut blob =
        rota_blob::emit_blob(Isa::Lx106, rota_abi::ABI_VERSION, "init", &image, 0, &[]).unwrap();
    blob[60] ^= 0xFF;
    let (outcome, out, _) = boot(provisioned(&[("init", blob)]));
    assert_eq!(
        outcome,
        Outcome::Refused(
            Phase::Init,
            LoadError::Blob(rota_blob::Error::DigestMismatch)
        )
    );
    assert!(
        out.contains("overlay init refused: digest mismatch; starting app"),
        "{out}"
    );
}

#[test]
fn a_blob_for_another_abi_is_refused() {
    let image: Vec<u8> = (0..64).collect();
    let blob = rota_blob::emit_blob(Isa::Lx106, 1, "init", &image, 0, &[]).unwrap();
    let (outcome, _, _) = boot(provisioned(&[("init", blob)]));
    assert!(
        matches!(outcome, Outcome::Refused(Phase::Init, LoadError::Blob(_))),
        "{outcome:?}"
    );
}

#[test]
fn staged_deletions_and_surplus_staged_files_are_dropped_at_boot() {
    let mut store = Store::new(MemFlash::new(provisioned(&[("a", vec![1; 10])])));
    for name in ["x", "y", "z"] {
        store
            .stage_begin(name.as_bytes(), 2048, &[7; 32], 1)
            .unwrap();
        store.stage_write(name.as_bytes(), 0, &[0; 1024]).unwrap();
    }
    store.stage_delete(b"a").unwrap();
    let (_, _, flash) = boot(store.into_inner().contents().to_vec());
    let mut store = Store::new(MemFlash::new(flash));
    let mut cursor = rota_store::Cursor::default();
    let mut staged = Vec::new();
    while let Some(s) = store.next_staged(&mut cursor).unwrap() {
        assert!(!s.tombstone, "the staged deletion is gone");
        assert_eq!(s.done, 1024, "kept for resuming");
        staged.push(s.name.as_bytes().to_vec());
    }
    assert_eq!(staged.len(), record::KEPT_STAGED, "{staged:?}");
    store.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert!(store.find(b"a").unwrap().is_some(), "nothing deletes `a`");
}

fn host(flash: Vec<u8>) -> Host {
    Host {
        flash: MemFlash::new(flash),
        out: RefCell::new(String::new()),
    }
}

/// Commits `config` through the core's own `commit` service, as `provision` does.
fn commit_service(board: &mut Host, config: &[u8]) -> i32 {
    let mut state = CoreState::new(board, &HEAP, 8192);
    services::table(&mut state).commit(config, &CommitParams::IMMEDIATE)
}

#[test]
fn a_config_committed_during_the_boot_survives_the_heap_report() {
    // The boot loads config A; `provision` commits config B and the core, before rebooting, saves the
    // boot's heap report: the record must then hold B (it used to be written back with A).
    let mut board = host(provisioned(&[]));
    let mut ctx = Context::new();
    record::start_boot(&mut board, &mut ctx).unwrap();
    assert_eq!(ctx.config(), b"device config");
    assert!(commit_service(&mut board, b"the update's new config") > 0);
    let stat = PhaseStat {
        phase: 3,
        used: 1,
        peak: 2,
        stack_peak: 3,
    };
    record::save_report(&mut board, &[Some(stat)]);
    let (_, payload) = config_of(board.flash.contents().to_vec());
    let (config, report) = record::split(&payload).unwrap();
    assert_eq!(config, b"the update's new config");
    assert_eq!(PhaseStat::decode(report), Some(stat));
    // The next boot starts from it.
    let mut ctx = Context::new();
    record::start_boot(&mut board, &mut ctx).unwrap();
    assert_eq!(ctx.config(), b"the update's new config");
    assert_eq!(ctx.report(), report);
}

#[test]
fn a_config_of_the_largest_size_goes_through_check_commit_and_reboot() {
    use rota_wire::config::{DeviceConfig, MAX_CONFIG};
    let largest = DeviceConfig::largest();
    let mut bytes = [0u8; 2 * MAX_CONFIG];
    let n = largest.encode(&mut bytes).unwrap();
    let bytes = &bytes[..n];
    assert!(MAX_CONFIG - n < 4, "{n} bytes is the largest config");
    let view = rota_wire::ConfigView::parse(bytes).unwrap();
    DeviceConfig::check_update(bytes, &view.keep()).unwrap();
    let mut board = host(provisioned(&[]));
    let mut ctx = Context::new();
    record::start_boot(&mut board, &mut ctx).unwrap();
    assert!(commit_service(&mut board, bytes) > 0);
    // Reboot with the largest heap report the core writes: both survive whole.
    let stats = [Some(PhaseStat::default()); 5];
    record::save_report(&mut board, &stats);
    let (outcome, out, flash) = boot(board.flash.contents().to_vec());
    assert_eq!(
        outcome,
        Outcome::Refused(Phase::Init, LoadError::NotFound),
        "{out}"
    );
    let (_, payload) = config_of(flash);
    let (config, _) = record::split(&payload).unwrap();
    assert_eq!(config, bytes);
    assert_eq!(DeviceConfig::decode(config), Ok(largest));
    // One byte more is refused by the check and by the commit service, and nothing changes.
    let mut over = [0u8; MAX_CONFIG + 1];
    over[..n].copy_from_slice(bytes);
    let mut board = host(provisioned_with(bytes, &[]));
    assert_eq!(commit_service(&mut board, &over), status::ETOOLONG);
    let (_, payload) = config_of(board.flash.contents().to_vec());
    assert_eq!(record::split(&payload).unwrap().0, bytes);
}

#[test]
fn file_info_lists_in_order_in_one_scan_and_starts_over_after_a_change() {
    let files: Vec<(&str, Vec<u8>)> = ["a", "b", "c"]
        .into_iter()
        .map(|n| (n, n.as_bytes().repeat(100)))
        .collect();
    let mut board = host(provisioned(&files));
    let mut state = CoreState::new(&mut board, &HEAP, 8192);
    let svc = services::table(&mut state);
    let names = |svc: &rota_abi::Services, order: &[u32]| -> Vec<Option<Vec<u8>>> {
        order
            .iter()
            .map(|&i| {
                let f = svc.file_info(false, i).expect("the store reads");
                f.map(|f| f.name.as_bytes().to_vec())
            })
            .collect()
    };
    let all = vec![
        Some(b"a".to_vec()),
        Some(b"b".to_vec()),
        Some(b"c".to_vec()),
        None,
    ];
    assert_eq!(names(&svc, &[0, 1, 2, 3]), all);
    // Out of order, repeated, and after the end: the same answers as a fresh scan.
    let shuffled = [2, 0, 0, 3, 1, 2];
    let expected: Vec<_> = shuffled.iter().map(|&i| all[i as usize].clone()).collect();
    assert_eq!(names(&svc, &shuffled), expected);
    // A change to the store in the middle of a listing: the next answers see the new store.
    assert_eq!(names(&svc, &[0]), vec![Some(b"a".to_vec())]);
    let a = rota_abi::Name::new(b"a").unwrap();
    assert_eq!(svc.stage_delete(&a), status::OK);
    assert!(svc.commit(&[], &CommitParams::IMMEDIATE) > 0);
    assert_eq!(
        names(&svc, &[0, 1, 2]),
        vec![Some(b"b".to_vec()), Some(b"c".to_vec()), None]
    );
    assert!(matches!(svc.file_info(true, 0), Ok(None)), "nothing staged");
}
