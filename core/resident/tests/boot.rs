//! `rota_core::run` on the host with a board double: the refusal paths (nothing is executed, the app
//! still starts, the heap report and the residue are printed). Overlays that run are tested under QEMU.
use core::cell::RefCell;
use rota_core::heap::AccountingHeap;
use rota_core::stack::Stack;
use rota_core::{layout, Board, Isa, Memory, Outcome};
use rota_loader::LoadError;
use rota_memflash::MemFlash;

struct Host {
    flash: MemFlash<Vec<u8>>,
    out: RefCell<String>,
}

impl Board for Host {
    type Flash = MemFlash<Vec<u8>>;
    const ISA: Isa = Isa::Lx106;
    fn console_write(&mut self, bytes: &[u8]) {
        self.out
            .borrow_mut()
            .push_str(&String::from_utf8_lossy(bytes));
    }
    fn flash(&mut self) -> &mut Self::Flash {
        &mut self.flash
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

fn boot(storage: Vec<u8>) -> (Outcome, String) {
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
    let mut app_ran = false;
    let outcome = rota_core::run(&mut board, &HEAP, Memory { arena, stack }, |b, _| {
        app_ran = true;
        b.console_write(b"app\n");
    });
    assert!(app_ran, "the app must start whatever the overlays did");
    (outcome, board.out.into_inner())
}

fn empty_storage() -> Vec<u8> {
    vec![0xFF; layout::REGION_SIZE as usize]
}

#[test]
fn missing_overlays_fall_through_to_the_app() {
    let (outcome, out) = boot(empty_storage());
    assert_eq!(outcome, Outcome::Refused("init", LoadError::NotFound));
    assert!(
        out.contains("overlay init refused: not found; starting app\n"),
        "{out}"
    );
    assert!(out.contains("heap phase=boot used=0 "), "{out}");
    assert!(out.contains("heap residue=0\n"), "{out}");
    assert!(
        out.ends_with("app\nheap phase=app used=0 free=8192 peak=0 arena=0 stack_peak=0\n"),
        "{out}"
    );
}

#[test]
fn a_corrupt_blob_is_refused_with_its_reason_and_never_prepared() {
    let image: Vec<u8> = (0..64).collect();
    let mut blob =
        rota_blob::emit_blob(Isa::Lx106, rota_abi::ABI_VERSION, "init", &image, 0, &[]).unwrap();
    blob[60] ^= 0xFF;
    let mut storage = empty_storage();
    let at = layout::slots().next().unwrap() as usize;
    storage[at..at + blob.len()].copy_from_slice(&blob);
    let (outcome, out) = boot(storage);
    assert_eq!(
        outcome,
        Outcome::Refused("init", LoadError::Blob(rota_blob::Error::DigestMismatch))
    );
    assert!(
        out.contains("overlay init refused: digest mismatch; starting app"),
        "{out}"
    );
}

#[test]
fn a_corrupt_slot_is_reported_once() {
    let mut storage = empty_storage();
    let at = layout::slots().nth(2).unwrap() as usize;
    storage[at..at + 4].copy_from_slice(b"JUNK");
    let (_, out) = boot(storage);
    assert_eq!(
        out.matches("slot 24576: skipped, bad magic").count(),
        1,
        "{out}"
    );
}
