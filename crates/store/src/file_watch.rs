//! Whether a SQLite database file may have changed since the last look, from the kernel's
//! inotify events on its directory (Linux), read without blocking. A commit writes the
//! database's WAL (or journal, or the file itself), and the kernel queues that event before the
//! writer's `write` returns, so a change committed before a request arrived is always seen by
//! that request — for the price of one non-blocking `read`, where asking SQLite
//! (`PRAGMA data_version`) takes a read transaction with its lock calls. Elsewhere, or when
//! inotify cannot be set up, [`FileWatch::open`] gives `None` and the caller asks SQLite.

use std::path::Path;

/// An inotify watch on the directory of one database file.
pub(crate) struct FileWatch {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
    /// The names whose events count: the file, its `-wal` and its `-journal`.
    #[cfg(target_os = "linux")]
    names: [Vec<u8>; 3],
    /// The watch was removed (the directory went away): every look counts as a change.
    #[cfg(target_os = "linux")]
    lost: std::sync::atomic::AtomicBool,
}

impl FileWatch {
    /// Watches the directory of `path` for writes to it, its WAL or journal, and for their
    /// creation, removal or renaming.
    #[cfg(target_os = "linux")]
    pub(crate) fn open(path: &Path) -> Option<FileWatch> {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::ffi::OsStrExt;
        let name = path.file_name()?.as_bytes().to_vec();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let dir = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: plain system calls; the descriptor is owned from here on.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            fallback(path, "inotify_init1");
            return None;
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mask = libc::IN_MODIFY
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO;
        // SAFETY: `dir` is a NUL-terminated path; `fd` is a live inotify descriptor.
        let wd = unsafe {
            libc::inotify_add_watch(std::os::fd::AsRawFd::as_raw_fd(&fd), dir.as_ptr(), mask)
        };
        if wd < 0 {
            fallback(path, "inotify_add_watch");
            return None;
        }
        let with = |suffix: &[u8]| [name.as_slice(), suffix].concat();
        Some(FileWatch {
            names: [with(b""), with(b"-wal"), with(b"-journal")],
            fd,
            lost: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// No inotify here: the caller asks SQLite.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn open(_path: &Path) -> Option<FileWatch> {
        None
    }

    /// Whether the file may have changed since the last call (the events are consumed). An
    /// overflowed event queue, a failed read or a lost watch count as a change.
    #[cfg(target_os = "linux")]
    pub(crate) fn changed(&self) -> bool {
        use std::sync::atomic::Ordering;
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        if self.lost.load(Ordering::Relaxed) {
            return true;
        }
        let mut changed = false;
        // Aligned for `inotify_event`; room for many events with their names.
        let mut buf = [0u64; 512];
        loop {
            // SAFETY: reads into `buf`, which is `size_of_val(&buf)` bytes long.
            let n = unsafe {
                libc::read(
                    std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                    buf.as_mut_ptr().cast(),
                    std::mem::size_of_val(&buf),
                )
            };
            if n < 0 {
                return match std::io::Error::last_os_error().kind() {
                    std::io::ErrorKind::WouldBlock => changed,
                    std::io::ErrorKind::Interrupted => continue,
                    _ => true,
                };
            }
            // SAFETY: the kernel wrote `n` bytes of whole events into `buf`.
            let bytes =
                unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
            let mut at = 0;
            while at + HEADER <= bytes.len() {
                // SAFETY: a whole event header starts at `at` (the kernel never splits one);
                // read unaligned, as the names between events have any length.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(bytes[at..].as_ptr().cast()) };
                let name_end = (at + HEADER + ev.len as usize).min(bytes.len());
                let name = &bytes[at + HEADER..name_end];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                if ev.mask & (libc::IN_Q_OVERFLOW | libc::IN_IGNORED) != 0 {
                    if ev.mask & libc::IN_IGNORED != 0 {
                        self.lost.store(true, Ordering::Relaxed);
                    }
                    changed = true;
                } else if self.names.iter().any(|n| n == name) {
                    changed = true;
                }
                at = name_end;
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn changed(&self) -> bool {
        true
    }
}

/// Says why a file is not watched (most often the per-user limit of inotify instances), what
/// that costs, and how to lift it.
#[cfg(target_os = "linux")]
fn fallback(path: &Path, call: &str) {
    tracing::warn!(
        "cannot watch {} ({call}: {}); changes to it are checked with a SQLite read on every \
         request instead — raise fs.inotify.max_user_instances (sysctl) if the limit is reached",
        path.display(),
        std::io::Error::last_os_error()
    );
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn writes_to_the_file_or_its_wal_are_seen_and_other_files_are_not() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().to_owned();
        let db = dir.join("grants.db");
        std::fs::write(&db, b"x").unwrap();
        let w = FileWatch::open(&db).unwrap();
        assert!(!w.changed(), "nothing happened yet");
        std::fs::write(dir.join("counters.db"), b"busy neighbour").unwrap();
        assert!(!w.changed(), "another file of the directory");
        std::fs::write(dir.join("grants.db-wal"), b"a commit").unwrap();
        assert!(w.changed(), "the WAL was written");
        assert!(!w.changed(), "seen once");
        std::fs::write(&db, b"checkpoint").unwrap();
        assert!(w.changed(), "the file itself");
        scratch.close().unwrap(); // the directory and everything in it removed
        assert!(w.changed(), "the directory is gone");
        assert!(w.changed(), "and stays a change: the watch is lost");
    }
}
