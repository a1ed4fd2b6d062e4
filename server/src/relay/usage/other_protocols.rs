use super::*;
use serde_json::json;

#[test]
fn openai_chat_responses_and_gemini_usage() {
    let chat = json!({"model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 40}}});
    let (u, m) = from_openai_or_gemini(&chat).unwrap();
    assert_eq!(
        (
            u.input_tokens,
            u.cache_read_tokens,
            u.output_tokens,
            m.as_deref()
        ),
        (60, 40, 7, Some("gpt-4o"))
    );
    let responses = json!({"type": "response.completed", "response": {"model": "gpt-5", "usage": {"input_tokens": 55, "input_tokens_details": {"cached_tokens": 30}, "output_tokens": 12}}});
    let (u, m) = from_openai_or_gemini(&responses).unwrap();
    assert_eq!(
        (
            u.input_tokens,
            u.cache_read_tokens,
            u.output_tokens,
            m.as_deref()
        ),
        (25, 30, 12, Some("gpt-5"))
    );
    let gemini = json!({"modelVersion": "gemini-2.5-pro", "usageMetadata": {"promptTokenCount": 55, "cachedContentTokenCount": 30, "candidatesTokenCount": 12, "thoughtsTokenCount": 3}});
    let (u, m) = from_openai_or_gemini(&gemini).unwrap();
    assert_eq!(
        (
            u.input_tokens,
            u.cache_read_tokens,
            u.output_tokens,
            m.as_deref()
        ),
        (25, 30, 15, Some("gemini-2.5-pro"))
    );
    assert!(from_openai_or_gemini(&json!({"choices": []})).is_none());
}

#[test]
fn stream_taps_split_anywhere() {
    let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"h\u{e9}llo\"}}]}\r\n\r\ndata: {\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3}}\r\n\r\ndata: [DONE]\r\n\r\n";
    for split in [1, 3, 17, stream.len()] {
        let mut tap = LastUsage::default();
        for c in stream.as_bytes().chunks(split) {
            tap.feed(c);
        }
        let u = tap.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (9, 3), "split {split}");
        assert!(tap.saw_end);
    }
}
