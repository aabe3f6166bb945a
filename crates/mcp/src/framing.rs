//! Newline-delimited framing (stdio) with a hard cap on line length.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Why a line could not be read whole.
#[derive(Debug)]
pub enum LineError {
    /// The line exceeded the cap; it was consumed up to its newline and discarded.
    TooLong(usize),
    /// The line is not UTF-8.
    NotUtf8,
    /// I/O failure.
    Io(std::io::Error),
}

/// Reads one line (without its `\n`, and without a trailing `\r`) of at most `max` bytes.
/// Returns `Ok(None)` at end of input. An over-long line is skipped to its end and reported
/// as [`LineError::TooLong`], so the stream stays in step.
pub async fn read_line_capped<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<String>, LineError> {
    buf.clear();
    let mut total = 0usize;
    let mut overflow = false;
    loop {
        let chunk = r.fill_buf().await.map_err(LineError::Io)?;
        if chunk.is_empty() {
            if total == 0 {
                return Ok(None);
            }
            break;
        }
        let (take, done) = match memchr(chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        total += take;
        if !overflow {
            if total > max + 1 {
                overflow = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        r.consume(take);
        if done {
            break;
        }
    }
    if overflow {
        return Err(LineError::TooLong(total));
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    if buf.len() > max {
        return Err(LineError::TooLong(buf.len()));
    }
    String::from_utf8(std::mem::take(buf))
        .map(Some)
        .map_err(|_| LineError::NotUtf8)
}

fn memchr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_and_caps() {
        let data = b"short\nthis line is far too long\r\nok\r\nlast".to_vec();
        let mut r = tokio::io::BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_capped(&mut r, &mut buf, 10)
                .await
                .unwrap()
                .as_deref(),
            Some("short")
        );
        assert!(matches!(
            read_line_capped(&mut r, &mut buf, 10).await,
            Err(LineError::TooLong(_))
        ));
        assert_eq!(
            read_line_capped(&mut r, &mut buf, 10)
                .await
                .unwrap()
                .as_deref(),
            Some("ok")
        );
        assert_eq!(
            read_line_capped(&mut r, &mut buf, 10)
                .await
                .unwrap()
                .as_deref(),
            Some("last")
        );
        assert!(read_line_capped(&mut r, &mut buf, 10)
            .await
            .unwrap()
            .is_none());
        let bad = b"\xff\xfe\n".to_vec();
        let mut r = tokio::io::BufReader::new(&bad[..]);
        assert!(matches!(
            read_line_capped(&mut r, &mut buf, 10).await,
            Err(LineError::NotUtf8)
        ));
    }
}
