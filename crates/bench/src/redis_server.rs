//! [`RedisServer`]: a throw-away `redis-server` (the Debian package `scripts/test.sh`
//! installs) on a free loopback port with its own temp dir, no persistence, stopped on drop.
//! The store's and the binary's tests and the load harness start one each.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A running `redis-server`, killed (and its dir removed) on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    program: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one, or, when `redis-server` is not installed: `None` with a "skipped" line,
    /// or a panic when `PORTCULLIS_REQUIRE_PEERS=1` (as the test command sets), so that CI
    /// never skips quietly. `extra` goes to the command line (e.g. `--requirepass`).
    pub fn start(extra: &[&str]) -> Option<RedisServer> {
        let Some(program) = find("redis-server") else {
            if std::env::var("PORTCULLIS_REQUIRE_PEERS").as_deref() == Ok("1") {
                panic!("redis-server is missing: scripts/test.sh installs it (apt-get install redis-server)");
            }
            eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
            return None;
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "portcullis-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir for redis-server");
        let mut server = RedisServer {
            child: None,
            port: crate::free_port(),
            dir,
            program,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.restart();
        Some(server)
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its temp dir (logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills it (SIGKILL: no goodbye to clients), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops it (SIGSTOP) without closing anything: connections and connects still succeed,
    /// nothing is answered — a Redis that hangs.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused one go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        let c = self.child.as_ref().expect("redis-server is running");
        let pid = libc::pid_t::try_from(c.id()).expect("a pid");
        // SAFETY: kill(2) on the pid of our own child; no memory is passed.
        assert_eq!(
            unsafe { libc::kill(pid, sig) },
            0,
            "signal {sig} to redis-server"
        );
    }

    /// Starts it again on the same port (empty: nothing was saved), waiting until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::File::create(self.dir.join("redis.log")).expect("redis.log");
        let child = Command::new(&self.program)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            // The contention tests open 1,000 connections at once: with Redis's default
            // backlog (511) a loaded machine drops SYNs, whose retransmit (1 s) outlasts the
            // stores' 500 ms connect timeout.
            .args(["--tcp-backlog", "4096", "--maxclients", "10000"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis.log"))
            .stderr(log)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {} within 10 s; see {}",
                self.port,
                self.dir.join("redis.log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Empties its script cache (`SCRIPT FLUSH`), as a restart without data would: the next
    /// `EVALSHA` of a script is refused with `NOSCRIPT`.
    pub fn flush_scripts(&self) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("redis-server answers");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"SCRIPT FLUSH\r\n").expect("SCRIPT FLUSH sent");
        let mut line = String::new();
        BufReader::new(s)
            .read_line(&mut line)
            .expect("SCRIPT FLUSH answered");
        assert!(line.starts_with("+OK"), "SCRIPT FLUSH answered {line:?}");
    }

    /// Whether it answers `PING` (with `-NOAUTH` when a password is required).
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).is_ok()
            && (line.starts_with("+PONG") || line.starts_with("-NOAUTH"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `name` on `PATH`.
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
