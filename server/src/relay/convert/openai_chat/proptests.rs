use super::*;
use crate::relay::test_strategies::{chunks, json};
use futures_util::StreamExt;
use proptest::prelude::*;

fn stream() -> ChunkStream {
    let mut s = ChunkStream::new(futures_util::stream::empty().boxed(), "claude-x", true);
    s.created = 0;
    s
}

/// A chat request: valid-looking roles and parts, arbitrary values where the protocol
/// leaves room.
fn chat_request() -> impl Strategy<Value = Value> {
    let content = prop_oneof![
        Just(Value::Null),
        ".{0,12}".prop_map(Value::from),
        proptest::collection::vec(
            prop_oneof![
                ".{0,8}".prop_map(|t| json!({"type": "text", "text": t})),
                ".{0,8}".prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
                Just(json!({"type": "image_url", "image_url": "data:image/png;base64,AAAA"})),
                json(),
            ],
            0..3
        )
        .prop_map(Value::Array),
        json(),
    ];
    let message = (
        proptest::sample::select(
            &["system", "developer", "user", "assistant", "tool", "x"][..],
        ),
        content,
        proptest::option::of(proptest::collection::vec(
            (".{0,4}", ".{0,4}", prop_oneof![Just(String::new()), Just("{\"a\":1}".to_string()), ".{0,8}"]),
            0..2,
        )),
        proptest::option::of(".{0,6}"),
    )
        .prop_map(|(role, content, calls, tool_call_id)| {
            let mut m = json!({"role": role, "content": content});
            if let Some(calls) = calls {
                m["tool_calls"] = calls
                    .into_iter()
                    .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
                    .collect();
            }
            if let Some(id) = tool_call_id {
                m["tool_call_id"] = json!(id);
            }
            m
        });
    (
        proptest::collection::vec(message, 0..5),
        proptest::option::of(any::<u64>()),
        proptest::option::of(-1e9f64..1e9),
        json(),
        json(),
        proptest::option::of(proptest::collection::vec((".{0,4}", json()), 0..2)),
        any::<bool>(),
    )
        .prop_map(|(messages, max_tokens, temperature, stop, tool_choice, tools, stream)| {
            let mut r = json!({"model": "m", "messages": messages, "stop": stop,
                               "tool_choice": tool_choice, "stream": stream, "user": "u"});
            if let Some(t) = max_tokens {
                r["max_tokens"] = json!(t);
            }
            if let Some(t) = temperature {
                r["temperature"] = json!(t);
            }
            if let Some(tools) = tools {
                r["tools"] = tools
                    .into_iter()
                    .map(|(name, params)| json!({"type": "function", "function": {"name": name, "parameters": params}}))
                    .collect();
            }
            r
        })
}

/// A valid Anthropic stream: text, tool calls, a stop reason and usage.
fn anthropic_stream() -> impl Strategy<Value = Vec<Value>> {
    (
        proptest::collection::vec(
            prop_oneof![
                ".{0,12}".prop_map(|t| (false, t)),
                ".{0,12}".prop_map(|t| (true, t)),
            ],
            0..5,
        ),
        any::<u32>(),
        any::<u32>(),
        proptest::sample::select(&["end_turn", "max_tokens", "tool_use", "stop_sequence"][..]),
    )
        .prop_map(|(blocks, input, output, stop)| {
            let mut events = vec![json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": input, "output_tokens": 1}}})];
            for (i, (tool, text)) in blocks.into_iter().enumerate() {
                if tool {
                    events.push(json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": format!("t{i}"), "name": "f"}}));
                    events.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": text}}));
                } else {
                    events.push(json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}));
                    events.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": text}}));
                }
                events.push(json!({"type": "content_block_stop", "index": i}));
            }
            events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": output}}));
            events.push(json!({"type": "message_stop"}));
            events
        })
}

/// Found by the properties: a non-object `usage` in `message_start` made the next
/// `message_delta` panic, and huge figures overflowed the OpenAI usage sums.
#[test]
fn odd_usage_does_not_panic() {
    let mut s = stream();
    s.convert(&json!({"type": "message_start", "message": {"usage": 5}}));
    s.convert(&json!({"type": "message_delta", "usage": {"output_tokens": u64::MAX}}));
    s.convert(&json!({"type": "message_delta", "usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": u64::MAX}}));
    let out = s.convert(&json!({"type": "message_stop"}));
    assert!(
        out.contains(&format!("\"total_tokens\":{}", u64::MAX)),
        "{out}"
    );
}

proptest! {
    #![proptest_config(crate::relay::test_strategies::config(256))]

    /// Any request body: parsing and conversion never panic, and a converted body is an
    /// Anthropic request with the model, messages and max_tokens.
    #[test]
    fn request_conversion_never_panics(body in prop_oneof![chat_request(), json()]) {
        if let Ok(req) = serde_json::from_value::<ChatRequest>(body) {
            if let Ok(out) = to_anthropic(&req) {
                prop_assert_eq!(&out["model"], &json!(req.model));
                prop_assert!(out["messages"].is_array());
                prop_assert!(out["max_tokens"].is_u64());
            }
        }
    }

    /// Any Anthropic answer or error body converts without a panic.
    #[test]
    fn response_and_error_conversion_never_panic(msg in json(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let c = from_anthropic(&msg, "m");
        prop_assert_eq!(&c["object"], "chat.completion");
        let _ = from_anthropic(&json!({"content": msg, "usage": msg}), "m");
        let _ = error_from_anthropic(msg.to_string().as_bytes());
        let _ = error_from_anthropic(&bytes);
    }

    /// Arbitrary events, in any order, never panic the stream converter.
    #[test]
    fn arbitrary_stream_events(
        events in proptest::collection::vec(
            (proptest::sample::select(&["message_start", "content_block_start", "content_block_delta", "message_delta", "message_stop", "error", "x"][..]), json()),
            0..8,
        ),
        bytes in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut s = stream();
        for (kind, v) in &events {
            let _ = s.convert(&json!({"type": kind, "message": v, "usage": v, "delta": v, "content_block": v, "index": v, "error": v}));
            let _ = s.convert(v);
        }
        let _ = s.convert_chunk(&bytes);
    }

    /// A valid stream cut at any bytes converts to exactly what it converts to whole.
    #[test]
    fn stream_cut_anywhere_is_the_same(
        events in anthropic_stream(),
        crlf in any::<bool>(),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let raw: String = events
            .iter()
            .map(|e| format!("event: {}{nl}data: {e}{nl}{nl}", e["type"].as_str().unwrap()))
            .collect();
        let whole = stream().convert_chunk(raw.as_bytes());
        let mut s = stream();
        let cut: String = chunks(raw.as_bytes(), &raw_cuts).into_iter().map(|c| s.convert_chunk(c)).collect();
        prop_assert_eq!(&cut, &whole);
        prop_assert!(whole.ends_with("data: [DONE]\n\n"));
    }
}
