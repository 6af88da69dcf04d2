//! Writes the fuzz targets' seed corpora into `fuzz/corpus/<target>/` (or the directory given), from
//! the crates' own encoders: valid inputs in each target's input format, which the fuzzer mutates.
//! Run by `make fuzz` / `make fuzz-smoke` before the targets; nothing binary is checked in.
use std::path::{Path, PathBuf};

use rota_blob::{emit_blob, Isa};
use rota_memflash::MemFlash;
use rota_serial_link::frame::{encode, Kind, MAX_LINE};
use rota_store::{CommitParams, Store};
use rota_wire::frame::seal;
use rota_wire::mem::MemStore;
use rota_wire::msg::{kind, Ack, Committed, FileData, Files, Ready, Release};
use rota_wire::{
    sha256, DeviceConfig, DeviceMsg, Dir, Key, Link, ServerMsg, HEADER_LEN, MAX_FRAME,
};

fn put(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

/// One record of the session targets: `mode len:u16le bytes`.
fn rec(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    v.extend_from_slice(bytes);
    v
}

fn msg(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(payload);
    v
}

fn postcard_varint(mut v: u32, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn name_bytes(n: &[u8]) -> Vec<u8> {
    let mut v = vec![n.len() as u8];
    v.extend_from_slice(n);
    v
}

fn main() {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus"));

    // blob, loader: control byte 1 (digest fixed), then a blob.
    let image: Vec<u8> = (0..64u32)
        .flat_map(|i| (i * 0x0101_0101).to_le_bytes())
        .collect();
    let blobs = [
        emit_blob(Isa::Lx106, 1, "init", &image, 8, &[4, 12, 60]).unwrap(),
        emit_blob(Isa::Thumbv7m, 1, "tick", &image[..40], 6, &[]).unwrap(),
        emit_blob(
            Isa::Lx106,
            1,
            "provision",
            &image.repeat(8),
            0,
            &[0, 256, 1020],
        )
        .unwrap(),
    ];
    for (i, b) in blobs.iter().enumerate() {
        for (t, control) in [("blob", 1u8), ("loader", 1 | 2 << 1 | 3 << 5)] {
            let mut v = vec![control];
            v.extend_from_slice(b);
            put(&dir, t, &format!("blob{i}"), &v);
        }
    }

    // wire_frame: sealed frames of each kind.
    let key = Key::new(&[0x5a; 32]);
    let mut frame = vec![0u8; MAX_FRAME];
    let mut payload = vec![0u8; 1100];
    let mut store = MemStore::default();
    store.files.insert(b"app".to_vec(), (b"app v1".to_vec(), 1));
    store.files.insert(b"init".to_vec(), (b"init".to_vec(), 7));
    let hello = {
        let mut h = store.check_in(11223344, 9);
        h.heap.residue = 12;
        h
    };
    let device_msgs = [
        DeviceMsg::Hello(hello.clone()),
        DeviceMsg::Files(Files {
            files: store.file_list().into_iter().collect(),
        }),
        DeviceMsg::Ready(Ready { offset: 4096 }),
        DeviceMsg::Ack(Ack { offset: 8192 }),
        DeviceMsg::Staged,
        DeviceMsg::Committed(Committed { generation: 3 }),
        DeviceMsg::FileData(FileData {
            offset: 100,
            bytes: rota_wire::msg::Bytes(b"boot 1\n"),
        }),
    ];
    for (i, m) in device_msgs.iter().enumerate() {
        let n = m.encode(&mut payload).unwrap();
        frame[HEADER_LEN..HEADER_LEN + n].copy_from_slice(&payload[..n]);
        let len = seal(&mut frame, &key, Dir::ToServer, m.kind(), i as u32, n).unwrap();
        put(&dir, "wire_frame", &format!("device{i}"), &frame[..len]);
    }
    let server_msgs = [
        ServerMsg::List,
        ServerMsg::NoUpdate,
        ServerMsg::Release(Release {
            manifest: rota_wire::msg::Bytes(b"manifest"),
            signature: [3; 64],
        }),
    ];
    for (i, m) in server_msgs.iter().enumerate() {
        let n = m.encode(&mut payload).unwrap();
        frame[HEADER_LEN..HEADER_LEN + n].copy_from_slice(&payload[..n]);
        let len = seal(&mut frame, &key, Dir::ToDevice, m.kind(), 1 + i as u32, n).unwrap();
        put(&dir, "wire_frame", &format!("server{i}"), &frame[..len]);
    }

    // device_session: a Welcome, List, then Begin, Data, Finish, Upload, Commit (mode 0).
    let file = b"hello, device".to_vec();
    let mut begin = name_bytes(b"app");
    postcard_varint(file.len() as u32, &mut begin);
    begin.extend_from_slice(&sha256(&file));
    postcard_varint(2, &mut begin);
    let mut data = vec![0u8]; // offset 0
    postcard_varint(file.len() as u32, &mut data);
    data.extend_from_slice(&file);
    let mut upload = name_bytes(b"log");
    postcard_varint(0, &mut upload);
    postcard_varint(7, &mut upload);
    let mut s = Vec::new();
    s.extend(rec(0, &msg(kind::WELCOME, &[7; 16])));
    s.extend(rec(0, &msg(kind::LIST, &[])));
    s.extend(rec(0, &msg(kind::BEGIN, &begin)));
    s.extend(rec(0x30, &msg(kind::DATA, &data)));
    s.extend(rec(0, &msg(kind::FINISH, &name_bytes(b"app"))));
    s.extend(rec(0, &msg(kind::DELETE, &name_bytes(b"app"))));
    s.extend(rec(0, &msg(kind::UPLOAD, &upload)));
    s.extend(rec(0, &msg(kind::COMMIT, &[0])));
    put(&dir, "device_session", "update", &s);
    put(
        &dir,
        "device_session",
        "no-update",
        &rec(1, &msg(kind::NO_UPDATE, &[])),
    );
    // The list, then nothing to do; and a release (which a device without keys refuses).
    let mut s = Vec::new();
    s.extend(rec(0, &msg(kind::WELCOME, &[7; 16])));
    s.extend(rec(0, &msg(kind::LIST, &[])));
    s.extend(rec(0, &msg(kind::NO_UPDATE, &[])));
    put(&dir, "device_session", "listed-no-update", &s);
    let mut release = vec![8];
    release.extend_from_slice(b"manifest");
    release.extend_from_slice(&[3; 64]);
    let mut s = Vec::new();
    s.extend(rec(0, &msg(kind::WELCOME, &[7; 16])));
    s.extend(rec(0, &msg(kind::LIST, &[])));
    s.extend(rec(0, &msg(kind::RELEASE, &release)));
    put(&dir, "device_session", "release", &s);

    // server_session: what a device answers to the List (its files), then to the plan; or the
    // files and the NoUpdate (mode 1).
    let n = DeviceMsg::Files(Files {
        files: store.file_list().into_iter().collect(),
    })
    .encode(&mut payload)
    .unwrap();
    let files = payload[..n].to_vec();
    put(
        &dir,
        "server_session",
        "no-update",
        &rec(1, &msg(kind::FILES, &files)),
    );
    let mut s = Vec::new();
    s.extend(rec(0, &msg(kind::FILES, &files)));
    s.extend(rec(0, &msg(kind::READY, &[0])));
    for off in [4096u32, 5000] {
        let mut p = Vec::new();
        postcard_varint(off, &mut p);
        s.extend(rec(0, &msg(kind::ACK, &p)));
    }
    s.extend(rec(0, &msg(kind::STAGED, &[])));
    let mut fd = Vec::new();
    postcard_varint(100, &mut fd);
    postcard_varint(1024, &mut fd);
    fd.extend(std::iter::repeat_n(b'l', 1024));
    s.extend(rec(0, &msg(kind::FILE_DATA, &fd)));
    s.extend(rec(0, &msg(kind::COMMITTED, &[4])));
    put(&dir, "server_session", "update", &s);

    // config: encoded configs.
    let mut c = DeviceConfig::largest();
    let mut out = vec![0u8; 4096];
    let n = c.encode(&mut out).unwrap();
    put(&dir, "config", "largest", &out[..n]);
    c.files.clear();
    c.chk.clear();
    c.ip = None;
    c.protocol = 2;
    c.link = Link::Tcp;
    c.secret.truncate(11);
    c.keys.truncate(1);
    c.trials = 3;
    let n = c.encode(&mut out).unwrap();
    put(&dir, "config", "small", &out[..n]);

    // luaota_device: piece and output sizes, then commands (mode 0: signed).
    let mut l = vec![63, 182];
    l.extend(rec(0, b"{\"a\":\"pu\",\"data\":5}\nhello"));
    l.extend(rec(
        0,
        b"{\"a\":\"dl\",\"data\":3,\"name\":\"new.lua\"}\nabc",
    ));
    l.extend(rec(0, b"{\"a\":\"ls\"}"));
    l.extend(rec(
        0,
        b"{\"a\":\"mv\",\"from\":\"new.lua\",\"to\":\"b.lua\"}",
    ));
    l.extend(rec(
        0,
        b"{\"a\":\"ul\",\"len\":40,\"name\":\"app\",\"offset\":3}",
    ));
    l.extend(rec(0, b"{\"a\":\"restart\",\"chk\":\"0123456789abcdef0123456789abcdef\",\"files\":{\"b.lua\":7},\"server\":\"10.0.0.1\",\"port\":8266,\"leave\":0}"));
    put(&dir, "luaota_device", "update", &l);
    let mut l = vec![0, 10];
    l.extend(rec(0, b"{\"r\":\"OK!\"}"));
    put(&dir, "luaota_device", "no-update", &l);

    // luaota_server: device lines (control 1: signed).
    for (i, j) in [
        &b"{\"a\":\"HI\",\"id\":11223344,\"chk\":\"abc\",\"files\":{\"init.lua\":3},\"server\":\"1.2.3.4\",\"port\":8266}"[..],
        b"{\"s\":\"OK\"}",
        b"{\"s\":\"compile fail\",\"err\":\"no Lua\",\"lcsize\":3}",
        b"{\"a\":\"ul\",\"len\":40,\"name\":\"app\",\"offset\":3}",
        b"{\"a\":\"dl\",\"data\":3,\"name\":\"new.lua\"}",
    ]
    .iter()
    .enumerate()
    {
        let mut v = vec![1];
        v.extend_from_slice(j);
        put(&dir, "luaota_server", &format!("line{i}"), &v);
    }

    // store: a raw formatted image with a committed file (flags 0), and the built image (flags 1)
    // with ops and no patch.
    let mut st = Store::new(MemFlash::new(vec![0u8; 6 * 4096]));
    st.format(b"cfg").unwrap();
    let f: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
    st.stage_begin(b"app", 1500, &sha256(&f), 1).unwrap();
    st.stage_write(b"app", 0, &f).unwrap();
    st.stage_finish(b"app").unwrap();
    st.commit(None, &CommitParams::IMMEDIATE).unwrap();
    let ops = [
        1u8, 0, 40, 9, 200, 2, 2, 4, 9, 7, 3, 1, 2, 20, 3, 64, 2, 1, 2, 0,
    ];
    let mut v = vec![0u8, ops.len() as u8];
    v.extend_from_slice(&ops);
    v.extend_from_slice(st.into_inner().contents());
    put(&dir, "store", "raw", &v);
    let mut v = vec![1u8, ops.len() as u8];
    v.extend_from_slice(&ops);
    put(&dir, "store", "built", &v);

    // serial_decoder: console text and frames.
    let mut line = b"rota core on esp8266\r\n".to_vec();
    let mut buf = [0u8; MAX_LINE];
    for (k, p) in [
        (Kind::Connect, &[10u8, 0, 2, 100, 0x4a, 0x20][..]),
        (Kind::Accept, &[][..]),
        (Kind::Credit, &[0, 4][..]),
        (Kind::Data, &b"\x00\x00data\x00"[..]),
        (Kind::Close, &[0][..]),
    ] {
        let n = encode(k, 3, p, &mut buf).unwrap();
        line.extend_from_slice(&buf[..n]);
        line.extend_from_slice(b"log\n");
    }
    put(&dir, "serial_decoder", "session", &line);

    // release: control byte 1 (the fuzz key signs), then a manifest of 0, 1 and 10 files and a
    // signature slot; and one signed by another key as it is (control 0).
    for (name, count) in [("empty", 0usize), ("one", 1), ("ten", 10)] {
        let mut b = rota_release::ManifestBuilder::new(3, rota_release::Isa::Lx106, 5);
        for i in 0..count {
            b.file(format!("file{i}").as_bytes(), &image[..i * 4]);
        }
        let mut release = vec![1u8];
        release.extend(b.build().unwrap());
        release.extend([0u8; 64]);
        put(&dir, "release", name, &release);
    }
    let mut b = rota_release::ManifestBuilder::new(1, rota_release::Isa::Thumbv7m, 5);
    b.file(b"app", &image);
    let manifest = b.build().unwrap();
    let mut release = vec![0u8];
    release.extend(&manifest);
    release.extend(rota_release::sign(&manifest, &[7; 32]).unwrap());
    put(&dir, "release", "other-key", &release);

    println!("seeds written to {}", dir.display());
}
