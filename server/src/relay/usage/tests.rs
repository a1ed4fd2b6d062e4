use super::*;

#[test]
fn json_body_with_ttl_breakdown() {
    let body = br#"{"model":"claude-x","usage":{"input_tokens":12,"output_tokens":34,
        "cache_creation_input_tokens":30,"cache_read_input_tokens":7,
        "cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":20}}}"#;
    let (u, model) = from_json_body(body).unwrap();
    assert_eq!(model.as_deref(), Some("claude-x"));
    assert_eq!(
        u,
        TokenUsage {
            input_tokens: 12,
            output_tokens: 34,
            cache_create_5m_tokens: 10,
            cache_create_1h_tokens: 20,
            cache_read_tokens: 7
        }
    );
    let (u, _) =
        from_json_body(br#"{"usage":{"input_tokens":1,"cache_creation_input_tokens":9}}"#).unwrap();
    assert_eq!(u.cache_create_5m_tokens, 9);
    assert!(from_json_body(b"not json").is_none());
}

#[test]
fn stream_usage_from_start_and_delta_split_anywhere() {
    let stream = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":5,\"cache_creation_input_tokens\":0,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi \\\"message_start\\\"\"}}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":42}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );
    for split in [1usize, 7, 64, stream.len()] {
        let mut tap = StreamUsage::default();
        for chunk in stream.as_bytes().chunks(split) {
            tap.feed(chunk);
        }
        let u = tap.total();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cache_read_tokens),
            (25, 42, 5),
            "split {split}"
        );
        assert_eq!(tap.model.as_deref(), Some("claude-x"));
        assert!(tap.saw_message_stop);
    }
}

#[test]
fn two_messages_in_one_stream_are_summed() {
    let mut tap = StreamUsage::default();
    for _ in 0..2 {
        tap.feed(b"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n");
        tap.feed(b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n");
    }
    assert_eq!(tap.total().input_tokens, 20);
    assert_eq!(tap.total().output_tokens, 10);
}
