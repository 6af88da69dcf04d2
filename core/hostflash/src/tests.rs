//! [`open`] against a fake host file system.
extern crate std;

use super::*;
use embedded_storage::nor_flash::NorFlash;
use std::cell::RefCell;
use std::collections::HashMap;
use std::vec;
use std::vec::Vec;

std::thread_local! {
    /// The host's files, by NUL-terminated name (each test runs on its own thread).
    static FILES: RefCell<HashMap<Vec<u8>, Vec<u8>>> = RefCell::new(HashMap::new());
    /// Names passed to open or create, in order.
    static OPENED: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn file(name: &str) -> Option<Vec<u8>> {
    FILES.with(|f| f.borrow().get(&nul(name)).cloned())
}

fn put(name: &str, bytes: &[u8]) {
    FILES.with(|f| f.borrow_mut().insert(nul(name), bytes.to_vec()));
}

fn nul(name: &str) -> Vec<u8> {
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    n
}

struct Fake {
    name: Vec<u8>,
    /// Stores fail (a full disk).
    fail: bool,
}

impl Backing for Fake {
    fn store(&mut self, offset: u32, bytes: &[u8]) -> bool {
        if self.fail {
            return false;
        }
        FILES.with(|f| {
            let mut f = f.borrow_mut();
            let file = f.get_mut(&self.name).expect("open file exists");
            let end = offset as usize + bytes.len();
            if file.len() < end {
                file.resize(end, 0);
            }
            file[offset as usize..end].copy_from_slice(bytes);
        });
        true
    }

    fn power_cut(&mut self) {}
}

impl HostFile for Fake {
    fn open(path_nul: &[u8]) -> Option<Self> {
        assert_eq!(path_nul.last(), Some(&0), "names end in NUL");
        OPENED.with(|o| o.borrow_mut().push(path_nul.to_vec()));
        FILES
            .with(|f| f.borrow().contains_key(path_nul))
            .then(|| Fake {
                name: path_nul.to_vec(),
                fail: path_nul.starts_with(b"/full/"),
            })
    }

    fn create(path_nul: &[u8]) -> Option<Self> {
        OPENED.with(|o| o.borrow_mut().push(path_nul.to_vec()));
        if path_nul.starts_with(b"/ro/") {
            return None;
        }
        FILES.with(|f| f.borrow_mut().insert(path_nul.to_vec(), Vec::new()));
        Some(Fake {
            name: path_nul.to_vec(),
            fail: path_nul.starts_with(b"/full/"),
        })
    }

    fn length(&mut self) -> Option<usize> {
        FILES.with(|f| f.borrow().get(&self.name).map(Vec::len))
    }

    fn read_at(&mut self, pos: usize, buf: &mut [u8]) -> bool {
        FILES.with(|f| {
            let f = f.borrow();
            let file = &f[&self.name];
            match file.get(pos..pos + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        })
    }
}

/// A 16 KB region that the "loader" filled with a pattern.
fn region() -> Vec<u8> {
    (0..16384u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn command_line_words() {
    let c = b"rota storage=/tmp/a b.bin cut=12 write bytes=65536";
    assert_eq!(arg(c, "storage"), Some(&b"/tmp/a"[..]));
    assert_eq!(arg(c, "cut").and_then(number), Some(12));
    assert_eq!(arg(c, "bytes").and_then(number), Some(65536));
    assert_eq!(arg(c, "cu"), None);
    assert!(flag(c, "write"));
    assert!(!flag(c, "writ"));
    assert_eq!(number(b"12x"), None);
    assert_eq!(number(b""), None);
    assert_eq!(number(b"9999999999"), None);
}

#[test]
fn without_storage_the_region_is_memory() {
    let (mut flash, origin) = open::<_, Fake>(region(), b"rota");
    assert_eq!(origin, Origin::Memory);
    flash.erase(0, 4096).unwrap();
    assert!(OPENED.with(|o| o.borrow().is_empty()));
}

#[test]
fn a_missing_file_is_created_from_the_region_and_then_written_through() {
    let (mut flash, origin) = open::<_, Fake>(region(), b"rota storage=/tmp/new.bin");
    assert_eq!(origin, Origin::Created);
    assert_eq!(file("/tmp/new.bin"), Some(region()));
    flash.erase(4096, 8192).unwrap();
    flash.write(4096, &[1, 2, 3, 4]).unwrap();
    assert_eq!(file("/tmp/new.bin").unwrap(), flash.flash().contents());
    assert_eq!(
        &file("/tmp/new.bin").unwrap()[4096..4101],
        &[1, 2, 3, 4, 0xFF]
    );
}

#[test]
fn an_existing_file_wins_over_the_region() {
    put("/tmp/s.bin", &vec![0x5A; 16384]);
    let (flash, origin) = open::<_, Fake>(region(), b"rota storage=/tmp/s.bin");
    assert_eq!(origin, Origin::File(16384));
    assert!(flash.flash().contents().iter().all(|&b| b == 0x5A));
}

#[test]
fn a_short_file_is_extended_with_what_the_region_held() {
    put("/tmp/short.bin", &[7; 100]);
    let (flash, origin) = open::<_, Fake>(region(), b"storage=/tmp/short.bin");
    assert_eq!(origin, Origin::File(100));
    let mut expect = region();
    expect[..100].fill(7);
    assert_eq!(flash.flash().contents(), &expect[..]);
    assert_eq!(file("/tmp/short.bin"), Some(expect));
}

#[test]
fn a_longer_file_fills_the_region_only() {
    put("/tmp/long.bin", &vec![3; 20000]);
    let (flash, origin) = open::<_, Fake>(region(), b"storage=/tmp/long.bin");
    assert_eq!(origin, Origin::File(16384));
    assert!(flash.flash().contents().iter().all(|&b| b == 3));
}

#[test]
fn unusable_files_leave_plain_memory() {
    for cmdline in [
        &b"storage=/ro/x.bin"[..],
        b"storage=",
        b"storage=/full/x.bin",
    ] {
        let (mut flash, origin) = open::<_, Fake>(region(), cmdline);
        assert_eq!(origin, Origin::Failed, "{cmdline:?}");
        assert_eq!(flash.flash().contents(), &region()[..]);
        flash.erase(0, 4096).unwrap();
    }
    let long = [b"storage=/".as_slice(), &[b'a'; PATH_MAX]].concat();
    assert_eq!(open::<_, Fake>(region(), &long).1, Origin::Failed);
    let ok = [b"storage=/".as_slice(), &[b'a'; PATH_MAX - 1]].concat();
    assert_eq!(open::<_, Fake>(region(), &ok).1, Origin::Created);
}

#[test]
fn the_file_is_named_with_a_trailing_nul() {
    open::<_, Fake>(region(), b"rota storage=/tmp/n.bin");
    let opened = OPENED.with(|o| o.borrow().clone());
    assert_eq!(opened[0], b"/tmp/n.bin\0");
}

#[test]
#[cfg(not(feature = "power-cut"))]
fn a_cut_is_refused_without_the_power_cut_feature() {
    let (mut flash, origin) = open::<_, Fake>(region(), b"rota storage=/tmp/c.bin cut=0");
    assert_eq!(origin, Origin::CutUnsupported);
    assert!(OPENED.with(|o| o.borrow().is_empty()), "nothing is opened");
    flash.erase(0, 4096).unwrap();
}

#[test]
#[cfg(feature = "power-cut")]
fn a_cut_takes_effect_at_its_operation() {
    let (mut flash, origin) = open::<_, Fake>(region(), b"rota storage=/tmp/c.bin cut=1");
    assert_eq!(origin, Origin::Created);
    flash.erase(0, 4096).unwrap();
    assert!(flash.write(0, &[0; 8]).is_err());
    let f = file("/tmp/c.bin").unwrap();
    assert_eq!(&f[..8], &[0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
}
