use super::*;
use crate::relay::{
    sse::MAX_LINE,
    test_strategies::{chunks, json},
};
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
struct Msg {
    input: u32,
    cache_read: u32,
    cache_5m: u32,
    cache_1h: u32,
    first_output: u32,
    deltas: Vec<u32>,
    text: String,
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(any::<u32>(), 0..3),
        ".{0,24}",
    )
        .prop_map(
            |(input, cache_read, cache_5m, cache_1h, first_output, deltas, text)| Msg {
                input,
                cache_read,
                cache_5m,
                cache_1h,
                first_output,
                deltas,
                text,
            },
        )
}

/// A well-formed Anthropic stream of `msgs` and the usage it must add up to.
fn anthropic_stream(msgs: &[Msg], crlf: bool) -> (Vec<u8>, TokenUsage) {
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    let mut want = TokenUsage::default();
    let mut ev = |name: &str, v: serde_json::Value| {
        out.push_str(&format!("event: {name}{nl}data: {v}{nl}{nl}"));
    };
    for m in msgs {
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"model": "claude-x", "usage": {
            "input_tokens": m.input, "cache_read_input_tokens": m.cache_read,
            "cache_creation_input_tokens": u64::from(m.cache_5m) + u64::from(m.cache_1h),
            "cache_creation": {"ephemeral_5m_input_tokens": m.cache_5m, "ephemeral_1h_input_tokens": m.cache_1h},
            "output_tokens": m.first_output}}}),
        );
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": m.text}}),
        );
        for d in &m.deltas {
            ev(
                "message_delta",
                json!({"type": "message_delta", "usage": {"output_tokens": d}}),
            );
        }
        let output = m.deltas.last().copied().unwrap_or(m.first_output);
        let split = m.cache_5m > 0 || m.cache_1h > 0;
        add(
            &mut want,
            &TokenUsage {
                input_tokens: m.input.into(),
                output_tokens: output.into(),
                cache_create_5m_tokens: if split { m.cache_5m.into() } else { 0 },
                cache_create_1h_tokens: if split { m.cache_1h.into() } else { 0 },
                cache_read_tokens: m.cache_read.into(),
            },
        );
    }
    ev("message_stop", json!({"type": "message_stop"}));
    (out.into_bytes(), want)
}

fn tap(chunks: &[&[u8]]) -> StreamUsage {
    let mut t = StreamUsage::default();
    for c in chunks {
        t.feed(c);
    }
    t
}

/// A `data:` line holding `v`, prefixed so the tap's cheap filters let it through.
fn data_line(v: &serde_json::Value) -> Vec<u8> {
    format!("data: {v}\n\n").into_bytes()
}

proptest! {
    #![proptest_config(crate::relay::test_strategies::config(256))]

    /// A valid stream cut at any bytes gives the same usage as whole, and the right one.
    #[test]
    fn anthropic_stream_cut_anywhere(
        msgs in proptest::collection::vec(msg(), 1..3),
        crlf in any::<bool>(),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let (bytes, want) = anthropic_stream(&msgs, crlf);
        let whole = tap(&[&bytes]);
        let cut = tap(&chunks(&bytes, &raw_cuts));
        prop_assert_eq!(whole.total(), want);
        prop_assert_eq!(cut.total(), want);
        prop_assert_eq!(cut.model.as_deref(), Some("claude-x"));
        prop_assert!(cut.saw_message_stop && cut.saw_usage);
    }

    /// Arbitrary JSON in Anthropic events (huge numbers included) never panics.
    #[test]
    fn anthropic_arbitrary_events(
        events in proptest::collection::vec(
            (proptest::sample::select(&["message_start", "message_delta", "message_stop", "x"][..]), json(), json()),
            0..6,
        ),
    ) {
        let mut t = StreamUsage::default();
        for (kind, usage, message) in events {
            t.feed(&data_line(&json!({"type": kind, "usage": usage, "message": message})));
            t.feed(&data_line(&json!({"type": kind, "usage": usage, "message": {"usage": usage, "model": message}})));
            t.feed(&data_line(&usage));
        }
        let _ = t.total();
    }

    /// Arbitrary bytes never panic either tap; arbitrary bodies never panic the body parsers.
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        StreamUsage::default().feed(&bytes);
        LastUsage::default().feed(&bytes);
        let _ = from_json_body(&bytes);
    }

    #[test]
    fn openai_and_gemini_arbitrary_json(v in json()) {
        let _ = from_openai_or_gemini(&v);
        let _ = from_openai_or_gemini(&json!({"usage": v}));
        let _ = from_openai_or_gemini(&json!({"usageMetadata": v}));
        let _ = from_openai_or_gemini(&json!({"response": {"usage": v}}));
        let mut t = LastUsage::default();
        t.feed(&data_line(&json!({"usage": v})));
        t.feed(&data_line(&json!({"usageMetadata": v, "modelVersion": v})));
        let _ = from_json_body(v.to_string().as_bytes());
    }

    /// OpenAI and Gemini streams: cut anywhere, the last usage reported is the same.
    #[test]
    fn last_usage_cut_anywhere(
        prompt in any::<u32>(), completion in any::<u32>(), cached in any::<u32>(),
        texts in proptest::collection::vec(".{0,16}", 0..4),
        gemini in any::<bool>(),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let mut s = String::new();
        for t in &texts {
            s.push_str(&format!("data: {}\r\n\r\n", json!({"choices": [{"delta": {"content": t}}]})));
        }
        let last = if gemini {
            json!({"modelVersion": "g", "usageMetadata": {"promptTokenCount": u64::from(prompt) + u64::from(cached), "cachedContentTokenCount": cached, "candidatesTokenCount": completion}})
        } else {
            json!({"model": "g", "choices": [], "usage": {"prompt_tokens": u64::from(prompt) + u64::from(cached), "completion_tokens": completion, "prompt_tokens_details": {"cached_tokens": cached}}})
        };
        s.push_str(&format!("data: {last}\r\n\r\ndata: [DONE]\r\n\r\n"));
        let mut t = LastUsage::default();
        for c in chunks(s.as_bytes(), &raw_cuts) {
            t.feed(c);
        }
        let u = t.usage.expect("usage");
        prop_assert_eq!((u.input_tokens, u.output_tokens, u.cache_read_tokens), (u64::from(prompt), u64::from(completion), u64::from(cached)));
        prop_assert_eq!(t.model.as_deref(), Some("g"));
        prop_assert!(t.saw_end);
    }
}

/// Found by the properties: huge figures overflowed the sums (a panic in debug builds).
#[test]
fn huge_figures_saturate() {
    let mut t = StreamUsage::default();
    for _ in 0..2 {
        t.feed(format!("data: {}\n", json!({"type": "message_start", "message": {"usage": {
            "input_tokens": u64::MAX, "cache_creation": {"ephemeral_5m_input_tokens": u64::MAX, "ephemeral_1h_input_tokens": u64::MAX}}}})).as_bytes());
        t.feed(
            format!(
                "data: {}\n",
                json!({"type": "message_delta", "usage": {"cache_creation_input_tokens": 0}})
            )
            .as_bytes(),
        );
    }
    assert_eq!(t.total().input_tokens, u64::MAX);
    let (u, _) = from_openai_or_gemini(
        &json!({"usageMetadata": {"candidatesTokenCount": u64::MAX, "thoughtsTokenCount": 1}}),
    )
    .unwrap();
    assert_eq!(u.output_tokens, u64::MAX);
}

/// 64 MiB of one `data:` line with no newline: both taps hold at most one capped line, and
/// the usage after it still counts.
#[test]
fn sixty_four_mib_line_is_not_buffered() {
    let block = vec![b'7'; 1 << 20];
    let mut a = StreamUsage::default();
    let mut o = LastUsage::default();
    a.feed(b"data: {\"type\":\"message_start\",\"usage\":");
    o.feed(b"data: {\"usage\":");
    for _ in 0..64 {
        a.feed(&block);
        o.feed(&block);
        for (len, cap) in [a.lines.buffered(), o.lines.buffered()] {
            assert!(
                len <= MAX_LINE && cap <= 2 * MAX_LINE,
                "len {len} cap {cap}"
            );
        }
    }
    a.feed(b"\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n");
    o.feed(b"\ndata: {\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1}}\n");
    assert_eq!(a.total().input_tokens, 3);
    assert_eq!(o.usage.unwrap().input_tokens, 4);
}
