//! Reading a line-oriented file an attacker may have written (`replay`'s
//! recorded events): lines as bytes, each bounded, so one over-long or
//! non-UTF-8 line is one skipped line with its number, not an abort or all
//! of memory.

use std::io::BufRead;

/// One line, read with a bound.
pub(crate) enum Line {
    Text(Vec<u8>),
    /// Longer than `max` bytes; its bytes were skipped.
    TooLong,
}

/// Read the next line (without its `\n`) into `buf`, keeping at most
/// `max` bytes; `None` at the end of the input.
pub(crate) fn next_line(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<Line>> {
    buf.clear();
    let (mut too_long, mut any) = (false, false);
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (part, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        if !too_long && buf.len() + part.len() <= max {
            buf.extend_from_slice(part);
        } else {
            too_long = true;
            buf.clear();
        }
        let used = done.unwrap_or(chunk.len());
        r.consume(used);
        if done.is_some() {
            break;
        }
    }
    Ok(match (any, too_long) {
        (false, _) => None,
        (true, true) => Some(Line::TooLong),
        (true, false) => Some(Line::Text(std::mem::take(buf))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_and_split_across_reads() {
        let data = b"ab\n\xff\xfe\n0123456789\nlast".to_vec();
        // A tiny buffer: lines span several reads.
        let mut r = std::io::BufReader::with_capacity(3, &data[..]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(l) = next_line(&mut r, &mut buf, 5).unwrap() {
            got.push(match l {
                Line::Text(t) => String::from_utf8_lossy(&t).into_owned(),
                Line::TooLong => "<long>".into(),
            });
        }
        assert_eq!(got, ["ab", "\u{fffd}\u{fffd}", "<long>", "last"]);
    }
}
