use super::*;
use futures_util::StreamExt;

fn req(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

#[test]
fn request_keeps_system_tools_images_and_stops() {
    let r = req(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 100, "stop": "END", "stream": true,
        "messages": [
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "found"},
            {"role": "user", "content": "thanks"}
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        "tool_choice": "required"
    }));
    let a = to_anthropic(&r).unwrap();
    assert_eq!(a["system"], "Answer in JSON.");
    assert_eq!(a["max_tokens"], 100);
    assert_eq!(a["stop_sequences"], json!(["END"]));
    assert_eq!(a["stream"], true);
    assert_eq!(a["tool_choice"], json!({"type": "any"}));
    assert_eq!(a["tools"][0]["input_schema"], json!({"type": "object"}));
    let m = a["messages"].as_array().unwrap();
    assert_eq!(
        m.len(),
        3,
        "tool result and the next user turn merge: {m:?}"
    );
    assert_eq!(
        m[0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
    );
    assert_eq!(
        m[1]["content"][0],
        json!({"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": 1}})
    );
    assert_eq!(m[2]["content"][0]["type"], "tool_result");
    assert_eq!(m[2]["content"][1]["text"], "thanks");
    assert!(to_anthropic(&req(json!({"model": "m", "messages": []}))).is_err());
    assert!(to_anthropic(&req(
        json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})
    ))
    .is_err());
}

#[test]
fn response_and_usage() {
    let msg = json!({"id": "msg_1", "model": "claude-x", "stop_reason": "tool_use",
        "content": [{"type": "text", "text": "Let me look."}, {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": 2}}],
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 2}});
    let c = from_anthropic(&msg, "claude-x");
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"q\":2}"
    );
    assert_eq!(
        c["usage"],
        json!({"prompt_tokens": 42, "completion_tokens": 5, "total_tokens": 47, "prompt_tokens_details": {"cached_tokens": 30}})
    );
}

/// A real-shaped Anthropic stream: a tool call split across deltas, multi-byte UTF-8 split
/// between network chunks, CRLF line ends, several events in one chunk.
#[test]
fn stream_converts_event_by_event_however_it_is_cut() {
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_9", "model": "claude-x", "usage": {"input_tokens": 7, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "héllo 🌍"}}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "f"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
        json!({"type": "message_stop"}),
    ];
    let raw: String = events
        .iter()
        .map(|e| {
            format!(
                "event: {}\r\ndata: {}\r\n\r\n",
                e["type"].as_str().unwrap(),
                e
            )
        })
        .collect();
    for split in [1, 2, 5, 64, raw.len()] {
        let mut s = ChunkStream::new(futures_util::stream::empty().boxed(), "claude-x", true);
        let out: String = raw
            .as_bytes()
            .chunks(split)
            .map(|c| s.convert_chunk(c))
            .collect();
        let datas: Vec<&str> = out
            .split("\n\n")
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(*datas.last().unwrap(), "[DONE]", "split {split}");
        let chunks: Vec<Value> = datas
            .iter()
            .filter(|d| **d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "héllo 🌍", "split {split}");
        let args: String = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(args, "{\"a\":1}");
        assert!(chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
        let usage = chunks.iter().find(|c| c.get("usage").is_some()).unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], 9);
        assert_eq!(usage["usage"]["prompt_tokens"], 7);
        assert!(chunks.iter().all(|c| c["id"] == "chatcmpl-msg_9"));
    }
}
