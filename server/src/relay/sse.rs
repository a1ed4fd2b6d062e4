//! The one SSE line splitter. It sees the bytes as they are forwarded and hands complete
//! `event:`/`data:` lines to the tap; it never holds more than one line, and a line longer than
//! the cap is skipped, not buffered.

/// Longest line kept for inspection. Longer lines still flow to the client untouched.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Default)]
pub struct SseLines {
    partial: Vec<u8>,
    /// Inside a line that exceeded `MAX_LINE`: drop bytes until its end.
    skipping: bool,
}

/// One field line of an SSE stream.
#[derive(Debug, PartialEq, Eq)]
pub enum SseField<'a> {
    Event(&'a [u8]),
    Data(&'a [u8]),
}

impl SseLines {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; calls `on_field` for every complete `event:`/`data:` line in it.
    pub fn feed(&mut self, mut chunk: &[u8], mut on_field: impl FnMut(SseField<'_>)) {
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            let (line, rest) = chunk.split_at(nl);
            chunk = &rest[1..];
            if self.skipping {
                self.skipping = false;
                self.partial.clear();
                continue;
            }
            if self.partial.is_empty() {
                emit(line, &mut on_field);
            } else {
                self.partial.extend_from_slice(line);
                let full = std::mem::take(&mut self.partial);
                emit(&full, &mut on_field);
                self.partial = full;
                self.partial.clear();
            }
        }
        if !chunk.is_empty() && !self.skipping {
            if self.partial.len() + chunk.len() > MAX_LINE {
                self.skipping = true;
                self.partial = Vec::new();
            } else {
                self.partial.extend_from_slice(chunk);
            }
        }
    }

    /// A stream that ended without a final newline still delivers its last line.
    pub fn finish(&mut self, mut on_field: impl FnMut(SseField<'_>)) {
        if !self.skipping && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            emit(&line, &mut on_field);
        }
    }
}

fn emit(line: &[u8], on_field: &mut impl FnMut(SseField<'_>)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let value = |rest: &'_ [u8]| -> usize { usize::from(rest.first() == Some(&b' ')) };
    if let Some(rest) = line.strip_prefix(b"data:") {
        on_field(SseField::Data(&rest[value(rest)..]));
    } else if let Some(rest) = line.strip_prefix(b"event:") {
        on_field(SseField::Event(&rest[value(rest)..]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<String> {
        let mut p = SseLines::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |f| out.push(format!("{f:?}")));
        }
        p.finish(|f| out.push(format!("{f:?}")));
        out.into_iter()
            .map(|s| s.replace("Data(", "D").replace("Event(", "E"))
            .collect()
    }

    #[test]
    fn lines_split_across_chunks_and_crlf() {
        let mut p = SseLines::new();
        let mut data = Vec::new();
        for c in [
            &b"event: message_start\r\nda"[..],
            b"ta: {\"a\":",
            b"1}\n\n",
            b"data:x",
        ] {
            p.feed(c, |f| {
                if let SseField::Data(d) = f {
                    data.push(String::from_utf8_lossy(d).to_string())
                }
            });
        }
        p.finish(|f| {
            if let SseField::Data(d) = f {
                data.push(String::from_utf8_lossy(d).to_string())
            }
        });
        assert_eq!(data, vec!["{\"a\":1}", "x"]);
        assert_eq!(collect(&[b"event:ping\n"]).len(), 1);
    }

    #[test]
    fn overlong_line_is_skipped_not_buffered() {
        let mut p = SseLines::new();
        let big = vec![b'a'; MAX_LINE];
        let mut seen = Vec::new();
        p.feed(b"data: ", |_| {});
        p.feed(&big, |_| {});
        assert!(p.partial.capacity() <= MAX_LINE + 16);
        p.feed(b"tail\ndata: ok\n", |f| seen.push(format!("{f:?}")));
        assert_eq!(seen.len(), 1);
        assert!(seen[0].contains("[111, 107]"), "{seen:?}");
    }
}
