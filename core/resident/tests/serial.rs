//! The core's connection services over the serial link, on the host: a board double whose console is
//! a line to a host made of rota-serial-link's codec. The same services as over TCP; what the bridge
//! does with them is tested in tools/bridge and, end to end, under QEMU.
use rota_abi::{net, status, NetParams};
use rota_core::heap::AccountingHeap;
use rota_core::services::{self, CoreState};
use rota_core::{Board, Isa};
use rota_memflash::MemFlash;
use rota_serial_link::frame::{encode, Decoder, Kind, Token, MAX_LINE, MAX_PAYLOAD};
use std::collections::VecDeque;

struct Line {
    flash: MemFlash<Vec<u8>>,
    to_device: VecDeque<u8>,
    from_device: Vec<u8>,
}

impl Board for Line {
    type Flash = MemFlash<Vec<u8>>;
    type Nic = rota_net::NoNic;
    const ISA: Isa = Isa::Thumbv7m;
    fn console_write(&mut self, bytes: &[u8]) {
        self.from_device.extend_from_slice(bytes);
    }
    fn console_read(&mut self) -> Option<u8> {
        self.to_device.pop_front()
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
    fn sync_icache(&mut self) {}
}

static HEAP: AccountingHeap = AccountingHeap::empty();

/// What the device wrote: console text, and each frame as (kind, payload).
fn split(bytes: &[u8]) -> (String, Vec<(Kind, Vec<u8>)>) {
    let mut d = Decoder::new();
    let (mut text, mut frames) = (String::new(), Vec::new());
    for &b in bytes {
        match d.push(b).expect("the core writes well-formed frames") {
            Token::Console(c) => text.push(c as char),
            Token::Pending => {}
            Token::Frame => frames.push((d.frame().kind, d.frame().payload.to_vec())),
        }
    }
    (text, frames)
}

fn host_frame(kind: Kind, seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = [0u8; MAX_LINE];
    let n = encode(kind, seq, payload, &mut out).unwrap();
    out[..n].to_vec()
}

#[test]
fn the_connection_services_run_over_the_console_line() {
    let mem = Box::leak(vec![0u64; 2048].into_boxed_slice());
    // SAFETY: leaked memory used by nothing else.
    unsafe { HEAP.init(mem.as_mut_ptr() as *mut u8, 16384) };
    let mut board = Line {
        flash: MemFlash::new(vec![0xff; 64 * 1024]),
        to_device: VecDeque::new(),
        from_device: Vec::new(),
    };
    let mut state = CoreState::new(&mut board, &HEAP, 8192);
    let svc = services::table(&mut state);
    let serial = NetParams {
        link: net::LINK_SERIAL,
        ..NetParams::default()
    };
    assert_eq!(
        svc.net_up(&NetParams { link: 7, ..serial }),
        status::EINVAL,
        "an unknown link is refused"
    );
    assert_eq!(svc.net_up(&serial), status::OK);
    assert_eq!(svc.net_poll(), net::HAS_IP);
    assert_eq!(svc.net_connect(&[10, 0, 2, 100], 8266), status::OK);
    svc.write(b"console text between frames\n");
    // SAFETY: the services are done with the board until the next call.
    let board = unsafe { &mut *(state_board(&svc)) };
    let (text, frames) = split(&std::mem::take(&mut board.from_device));
    assert_eq!(text, "console text between frames\n");
    assert_eq!(
        frames.len(),
        1,
        "no data before the bridge accepted: {frames:?}"
    );
    assert_eq!(frames[0].0, Kind::Connect);
    assert_eq!(svc.net_send(b"x"), status::ECLOSED, "not connected yet");
    board.to_device.extend(host_frame(Kind::Accept, 0, &[]));
    assert_eq!(svc.net_poll(), net::HAS_IP | net::CONNECTED);
    assert_eq!(svc.net_send(b"hello server"), 12);
    let mut buf = [0u8; 64];
    assert_eq!(svc.net_recv(&mut buf), 0);
    let (_, frames) = split(&std::mem::take(&mut board.from_device));
    assert_eq!(
        frames,
        [
            (Kind::Data, b"hello server".to_vec()),
            (Kind::Credit, (MAX_PAYLOAD as u16).to_le_bytes().to_vec())
        ]
    );
    // A key typed between the bridge's frames reaches console_read, the data reaches net_recv.
    board.to_device.extend(b"q");
    board
        .to_device
        .extend(host_frame(Kind::Data, 1, b"welcome"));
    assert_eq!(svc.net_recv(&mut buf), 7);
    assert_eq!(&buf[..7], b"welcome");
    assert_eq!(svc.read_key(), Some(b'q'));
    board.to_device.extend(host_frame(Kind::Close, 2, &[0]));
    assert_eq!(svc.net_poll(), net::HAS_IP | net::CLOSED);
    assert_eq!(svc.net_recv(&mut buf), status::ECLOSED);
    svc.net_down();
    assert_eq!(svc.net_poll(), status::ENODEV, "the link is gone");
    // The host's allocator serves the core's boxes here: that the heap is given back is checked on
    // the devices (`heap residue=0` under QEMU).
}

/// The board behind a service table built by [`services::table`].
fn state_board(svc: &rota_abi::Services) -> *mut Line {
    // SAFETY: `svc.core` is the `CoreState<Line>` the table was built from, alive in the test.
    unsafe { &mut *(svc.core as *mut CoreState<'_, Line>) }.board as *mut Line
}
