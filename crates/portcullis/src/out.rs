//! Standard output for every command: a reader that stops early (`portcullis audit | head`)
//! ends the command quietly, as it does other Unix tools, instead of a `println!` panic.
//!
//! Text goes out through `out!` and `outln!`; code that takes a writer gets [`Stdout`].
//! On a closed pipe the process exits at once with status 0 (the reader has what it wanted);
//! any other write error is one line on standard error and status 2, like other failures.

use std::io::{self, Write};

/// Standard output whose write errors end the process (see the module).
pub(crate) struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        check(io::stdout().write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        check(io::stdout().flush())
    }
}

/// Passes a result through, except that a write error other than an interruption (which
/// `write_all` retries) ends the process.
fn check<T>(r: io::Result<T>) -> io::Result<T> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) if e.kind() != io::ErrorKind::Interrupted => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(2)
        }
        r => r,
    }
}

/// Writes formatted text to [`Stdout`]; what `print!` does, without its panic.
pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    // Errors end the process in `Stdout`; a `Display` impl that fails has nothing to add.
    let _ = Stdout.write_fmt(args);
}

/// `print!` to [`Stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

/// `println!` to [`Stdout`].
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
