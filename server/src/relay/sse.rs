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

#[cfg(test)]
impl SseLines {
    /// Bytes held for an unfinished line (what the cap bounds).
    pub(crate) fn buffered(&self) -> (usize, usize) {
        (self.partial.len(), self.partial.capacity())
    }
}

/// Properties over arbitrary input and arbitrary chunking. `PROPTEST_CASES=100000 cargo test
/// -p server --lib proptests` runs them longer.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Every field, owned, with the chunk boundaries given by `cuts`.
    fn fields(bytes: &[u8], cuts: &[usize]) -> Vec<(bool, Vec<u8>)> {
        let mut p = SseLines::new();
        let mut out = Vec::new();
        let mut push = |f: SseField<'_>| match f {
            SseField::Event(e) => out.push((false, e.to_vec())),
            SseField::Data(d) => out.push((true, d.to_vec())),
        };
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut at = 0;
        for c in cuts.into_iter().chain(std::iter::once(bytes.len())) {
            p.feed(&bytes[at..c], &mut push);
            assert!(p.partial.len() <= MAX_LINE);
            at = c;
        }
        p.finish(&mut push);
        out
    }

    /// Bytes that look like SSE: field names, separators, CR, LF and noise.
    fn sse_like() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"data:".to_vec()),
            Just(b"data: ".to_vec()),
            Just(b"event: ".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b": comment\n".to_vec()),
            Just("é🌍".as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 0..16),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(crate::relay::test_strategies::config(256))]

        /// However a stream is cut into chunks, the same fields come out as from one chunk.
        #[test]
        fn chunking_never_changes_the_fields(
            bytes in sse_like(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            prop_assert_eq!(fields(&bytes, &cuts), fields(&bytes, &[]));
        }

        /// Arbitrary bytes never panic, and every field is a line the input held.
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
            for (_, value) in fields(&bytes, &cuts) {
                prop_assert!(!value.contains(&b'\n'));
                prop_assert!(value.len() <= bytes.len());
            }
        }

    }

    proptest! {
        // Each case feeds megabytes: fewer of them.
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// A line with no newline never grows the buffer past the cap, however it is fed;
        /// the lines after it are parsed again.
        #[test]
        fn overlong_line_is_bounded(chunk in 1usize..(3 * MAX_LINE / 2), extra in 1usize..(4 * MAX_LINE)) {
            let mut p = SseLines::new();
            let block = vec![b'x'; chunk];
            let mut fed = 0;
            p.feed(b"data: ", |_| panic!("no line yet"));
            while fed < MAX_LINE + extra {
                p.feed(&block, |_| panic!("no line yet"));
                fed += chunk;
                let (len, cap) = p.buffered();
                prop_assert!(len <= MAX_LINE && cap <= 2 * MAX_LINE, "len {} cap {}", len, cap);
            }
            let mut seen = Vec::new();
            p.feed(b"\ndata: after\n", |f| seen.push(format!("{f:?}")));
            prop_assert_eq!(seen, vec![format!("{:?}", SseField::Data(b"after"))]);
        }
    }

    /// 64 MiB of `data:` with no newline: nothing is delivered and at most one line is held.
    #[test]
    fn sixty_four_mib_without_a_newline() {
        let mut p = SseLines::new();
        let block = vec![b'a'; 64 * 1024 + 7];
        p.feed(b"data: ", |_| {});
        let mut fed = 0;
        while fed < 64 << 20 {
            p.feed(&block, |_| panic!("an unfinished line was delivered"));
            fed += block.len();
            let (len, cap) = p.buffered();
            assert!(
                len <= MAX_LINE && cap <= 2 * MAX_LINE,
                "len {len} cap {cap}"
            );
        }
        let mut delivered = 0;
        p.finish(|_| delivered += 1);
        assert_eq!(delivered, 0, "the over-long line is dropped, not parsed");
    }
}
