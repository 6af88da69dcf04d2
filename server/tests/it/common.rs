//! Shared fixtures: temporary repositories and an in-process server on 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rota_server::listen;
use rota_server::repo::Repo;
use rota_server::session::{Limits, Server, SessionReport};
use tempfile::TempDir;
use tokio::sync::{mpsc, oneshot};

/// A `.lua` source over 1024 bytes, asking for `--SAFETRIM`, full of things a naive trimmer breaks.
pub fn init_lua() -> Vec<u8> {
    let mut src = String::from("--SAFETRIM\r\n-- rota test application\r\n");
    src.push_str("local url = \"http://example.invalid/--not-a-comment\" -- real comment\r\n");
    src.push_str("local banner = [==[\r\n  -- inside a long string ]] still\r\n]==]\r\n");
    src.push_str("--[[ a long comment\r\n  with code: local x = ( \r\n]]\r\n");
    for i in 0..60 {
        src.push_str(&format!("    local v{i} = {i} * 2 -- value {i}\r\n"));
    }
    src.push_str("return url .. banner\r\n");
    src.into_bytes()
}

/// 2500 bytes of data: two `pu` chunks and a `dl`.
pub fn data_txt() -> Vec<u8> {
    (0..2500u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// A temporary luaOTA repository.
pub struct Fixture {
    pub dir: TempDir,
}

impl Fixture {
    /// An empty repository.
    pub fn empty() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A repository with `init.lua`, `data.txt`, `lib/util.lc` and `default.json` naming them.
    pub fn standard() -> Self {
        let fx = Fixture::empty();
        fx.write("init.lua", &init_lua());
        fx.write("data.txt", &data_txt());
        fx.write("lib/util.lc", b"\x1bLuaQ\x00compiled elsewhere");
        fx.inventory(
            "default.json",
            &["init.lua", "data.txt", "lib/util.lc"],
            "supersekrit",
        );
        fx
    }

    /// The repository directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a repository file.
    pub fn write(&self, name: &str, data: &[u8]) {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }

    /// Writes an inventory file.
    pub fn inventory(&self, file: &str, files: &[&str], secret: &str) {
        let json = serde_json::json!({ "files": files, "secret": secret });
        self.write(file, json.to_string().as_bytes());
    }

    /// A server on this directory, default limits.
    pub async fn start(&self) -> Running {
        start(Repo::open_dir(self.path()).unwrap(), Limits::default()).await
    }
}

/// A server running in this test's runtime.
pub struct Running {
    pub addr: SocketAddr,
    pub server: Arc<Server>,
    reports: mpsc::UnboundedReceiver<SessionReport>,
    _stop: oneshot::Sender<()>,
}

/// Starts a server for `repo` on an ephemeral loopback port.
pub async fn start(repo: Repo, limits: Limits) -> Running {
    serve(Server::new(repo, limits).unwrap())
}

/// Runs `server` on an ephemeral loopback port (in this test's runtime).
pub fn serve(mut server: Server) -> Running {
    let reports = server.report_channel();
    let listener = listen::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = Arc::new(server);
    tokio::spawn(listen::run(listener, server.clone(), 4096, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        server,
        reports,
        _stop: stop,
    }
}

impl Running {
    /// The next finished session's report (sessions end in completion order).
    pub async fn report(&mut self) -> SessionReport {
        tokio::time::timeout(Duration::from_secs(20), self.reports.recv())
            .await
            .expect("a session report within 20 s")
            .expect("server running")
    }
}

/// Runs `git args` in `dir` (an author set, output discarded); panics unless it succeeds.
pub fn git(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=rota",
            "-c",
            "user.email=rota@example.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

/// A free loopback port (the server sets `SO_REUSEADDR`, so a restart can take it again).
pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}
