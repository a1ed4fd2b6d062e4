//! The few edits the relay makes to a passthrough body: the output limit admission granted, and
//! (for OpenAI-compatible streams) asking for the usage report. Only the edited top-level fields
//! are re-encoded; every other field is copied as the client wrote it, in its order.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{json, value::RawValue, Value};

/// A JSON object's top-level fields, in order, each value kept as raw text.
pub struct RawObject<'a> {
    fields: Vec<(Cow<'a, str>, Cow<'a, RawValue>)>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawObject<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    fields.push((k, Cow::Borrowed(v)));
                }
                Ok(RawObject { fields })
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'a> RawObject<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|e| format!("Request body is not a JSON object: {e}"))
    }

    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Sets a field (in place if present, else at the end).
    pub fn set(&mut self, name: &str, value: &Value) {
        let raw = RawValue::from_string(value.to_string()).ok();
        let Some(raw) = raw else { return };
        match self.fields.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = Cow::Owned(raw),
            None => self
                .fields
                .push((Cow::Owned(name.to_string()), Cow::Owned(raw))),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(k, _)| k != name);
    }

    pub fn to_bytes(&self) -> Bytes {
        let len = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>();
        let mut out = String::with_capacity(len + 2);
        out.push('{');
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // A key is re-encoded from its decoded text: escapes come out canonical.
            out.push_str(&Value::String(k.to_string()).to_string());
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
        Bytes::from(out)
    }
}

/// Which request body an output limit goes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Anthropic Messages: `max_tokens` (which includes a thinking budget).
    AnthropicMessages,
    /// OpenAI Chat Completions: `max_completion_tokens` or the older `max_tokens`.
    OpenAiChat,
    /// OpenAI Responses: `max_output_tokens`.
    OpenAiResponses,
    /// Gemini generateContent: `generationConfig.maxOutputTokens`.
    Gemini,
}

fn number(v: Option<&RawValue>) -> Option<u64> {
    v.and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        })
}

/// The output limit a request names, if any.
pub fn requested_output(dialect: Dialect, obj: &RawObject<'_>) -> Option<u64> {
    match dialect {
        Dialect::AnthropicMessages => number(obj.get("max_tokens")),
        Dialect::OpenAiChat => {
            number(obj.get("max_completion_tokens")).or_else(|| number(obj.get("max_tokens")))
        }
        Dialect::OpenAiResponses => number(obj.get("max_output_tokens")),
        Dialect::Gemini => obj
            .get("generationConfig")
            .and_then(|g| serde_json::from_str::<Value>(g.get()).ok())
            .and_then(|g| g.get("maxOutputTokens").and_then(Value::as_u64)),
    }
}

/// Smallest thinking budget Anthropic accepts.
const MIN_THINKING_BUDGET: u64 = 1024;

/// Writes the output limit into a body that admission changed or assumed.
pub fn set_output_limit(dialect: Dialect, obj: &mut RawObject<'_>, limit: u64) {
    match dialect {
        Dialect::AnthropicMessages => {
            obj.set("max_tokens", &json!(limit));
            // The thinking budget must stay below max_tokens: shrink it, or drop thinking when
            // no valid budget is left.
            let thinking = obj
                .get("thinking")
                .and_then(|t| serde_json::from_str::<Value>(t.get()).ok());
            if let Some(mut t) = thinking {
                let budget = t.get("budget_tokens").and_then(Value::as_u64);
                if budget.is_some_and(|b| b >= limit) {
                    if limit > MIN_THINKING_BUDGET {
                        t["budget_tokens"] = json!(limit - 1);
                        obj.set("thinking", &t);
                    } else {
                        obj.remove("thinking");
                    }
                }
            }
        }
        Dialect::OpenAiChat => {
            // Keep the field the client used; reasoning models only accept the newer one.
            if obj.get("max_completion_tokens").is_some() || obj.get("max_tokens").is_none() {
                obj.set("max_completion_tokens", &json!(limit));
                if obj.get("max_tokens").is_some() {
                    obj.set("max_tokens", &json!(limit));
                }
            } else {
                obj.set("max_tokens", &json!(limit));
            }
        }
        Dialect::OpenAiResponses => obj.set("max_output_tokens", &json!(limit)),
        Dialect::Gemini => {
            let mut config = obj
                .get("generationConfig")
                .and_then(|g| serde_json::from_str::<Value>(g.get()).ok())
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            config["maxOutputTokens"] = json!(limit);
            obj.set("generationConfig", &config);
        }
    }
}

/// The body with the output limit set, re-encoded only if there is one to set.
pub fn with_output_limit(dialect: Dialect, body: Bytes, limit: Option<u64>) -> Bytes {
    let Some(limit) = limit else { return body };
    match RawObject::parse(&body) {
        Ok(mut obj) => {
            set_output_limit(dialect, &mut obj, limit);
            obj.to_bytes()
        }
        // Routes parse the body before admission; an unparsable one never gets here.
        Err(_) => body,
    }
}

/// Asks an OpenAI-compatible Chat stream for its usage report (`stream_options.include_usage`,
/// which OpenAI needs to send any usage in a stream). Returns whether the client had not
/// asked itself: then `UsageChunkFilter` takes out what the option adds.
pub fn request_stream_usage(obj: &mut RawObject<'_>) -> bool {
    let mut options = obj
        .get("stream_options")
        .and_then(|o| serde_json::from_str::<Value>(o.get()).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if options.get("include_usage").and_then(Value::as_bool) == Some(true) {
        return false;
    }
    options["include_usage"] = json!(true);
    obj.set("stream_options", &options);
    true
}

/// Events longer than this pass through unfiltered (a stream without blank lines must not
/// grow the buffer).
const MAX_EVENT: usize = 1 << 20;

/// Takes out of an OpenAI Chat stream what the relay's own `include_usage` added, so that a
/// client that did not ask sees the stream it would have seen: the usage-only chunk
/// (`"choices":[]`) and the `"usage":null` the other chunks carry. Events are passed on as
/// soon as they are complete.
#[derive(Default)]
pub struct UsageChunkFilter {
    pending: Vec<u8>,
}

impl UsageChunkFilter {
    pub fn filter(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut start = 0;
        while let Some((end, sep)) = event_end(&self.pending[start..]) {
            let event = &self.pending[start..start + end];
            if !is_usage_only(event) {
                strip_null_usage(event, &mut out);
                out.extend_from_slice(&self.pending[start + end..start + end + sep]);
            }
            start += end + sep;
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_EVENT {
            out.append(&mut self.pending);
        }
        Bytes::from(out)
    }

    /// What is left when the stream ends (an event without its blank line).
    pub fn finish(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.pending))
    }
}

/// The end of the first complete event and the length of the blank line after it.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| (i, 2));
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn data_payloads(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    event.split(|b| *b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let rest = line.strip_prefix(b"data:")?;
        Some(rest.strip_prefix(b" ").unwrap_or(rest))
    })
}

fn is_usage_only(event: &[u8]) -> bool {
    data_payloads(event).any(|data| {
        memchr::memmem::find(data, b"\"usage\"").is_some()
            && serde_json::from_slice::<Value>(data).is_ok_and(|v| {
                v.get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(|c| c.is_empty())
                    && v.get("usage").is_some_and(Value::is_object)
            })
    })
}

/// Copies an event without its `"usage":null` fields. A quote inside a JSON string is always
/// escaped, so these bytes can only be the field itself.
fn strip_null_usage(event: &[u8], out: &mut Vec<u8>) {
    const FORMS: [&[u8]; 4] = [
        b",\"usage\":null",
        b", \"usage\": null",
        b"\"usage\":null,",
        b"\"usage\": null, ",
    ];
    let mut rest = event;
    'scan: loop {
        let mut first: Option<(usize, usize)> = None;
        for f in FORMS {
            if let Some(i) = memchr::memmem::find(rest, f) {
                if first.is_none_or(|(j, _)| i < j) {
                    first = Some((i, f.len()));
                }
            }
        }
        match first {
            Some((i, n)) => {
                out.extend_from_slice(&rest[..i]);
                rest = &rest[i + n..];
                continue 'scan;
            }
            None => {
                out.extend_from_slice(rest);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(dialect: Dialect, body: &str, limit: u64) -> Value {
        let out = with_output_limit(dialect, Bytes::from(body.to_string()), Some(limit));
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn untouched_fields_keep_their_text_and_order() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"h\u00e9 \"q\""}],"max_tokens":20000,"z":1.50}"#;
        let out = with_output_limit(
            Dialect::AnthropicMessages,
            Bytes::from_static(body.as_bytes()),
            Some(6640),
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"m","messages":[{"role":"user","content":"h\u00e9 \"q\""}],"max_tokens":6640,"z":1.50}"#
        );
        let same = with_output_limit(
            Dialect::AnthropicMessages,
            Bytes::from_static(body.as_bytes()),
            None,
        );
        assert_eq!(same, body.as_bytes());
    }

    #[test]
    fn each_dialect_gets_its_field() {
        assert_eq!(
            edit(Dialect::OpenAiChat, r#"{"model":"gpt"}"#, 5)["max_completion_tokens"],
            5
        );
        let v = edit(Dialect::OpenAiChat, r#"{"max_tokens":99}"#, 5);
        assert_eq!(
            (v["max_tokens"].clone(), v.get("max_completion_tokens")),
            (json!(5), None)
        );
        let v = edit(
            Dialect::OpenAiChat,
            r#"{"max_tokens":99,"max_completion_tokens":99}"#,
            5,
        );
        assert_eq!(
            (v["max_tokens"].clone(), v["max_completion_tokens"].clone()),
            (json!(5), json!(5))
        );
        assert_eq!(
            edit(Dialect::OpenAiResponses, r#"{"input":"x"}"#, 7)["max_output_tokens"],
            7
        );
        let v = edit(
            Dialect::Gemini,
            r#"{"contents":[],"generationConfig":{"temperature":0.5}}"#,
            9,
        );
        assert_eq!(
            v["generationConfig"],
            json!({"temperature": 0.5, "maxOutputTokens": 9})
        );
    }

    #[test]
    fn thinking_budgets_stay_below_the_limit() {
        let body = r#"{"max_tokens":32000,"thinking":{"type":"enabled","budget_tokens":16000}}"#;
        let v = edit(Dialect::AnthropicMessages, body, 4000);
        assert_eq!(v["thinking"]["budget_tokens"], 3999);
        let v = edit(Dialect::AnthropicMessages, body, 1024);
        assert!(v.get("thinking").is_none(), "no valid budget below 1,024");
        let v = edit(Dialect::AnthropicMessages, body, 20000);
        assert_eq!(v["thinking"]["budget_tokens"], 16000);
    }

    #[test]
    fn include_usage_is_asked_once() {
        let mut o = RawObject::parse(br#"{"stream":true,"stream_options":{"x":1}}"#).unwrap();
        assert!(request_stream_usage(&mut o));
        let v: Value = serde_json::from_slice(&o.to_bytes()).unwrap();
        assert_eq!(v["stream_options"], json!({"x": 1, "include_usage": true}));
        let mut o = RawObject::parse(br#"{"stream":true,"stream_options":{"include_usage":true}}"#)
            .unwrap();
        assert!(!request_stream_usage(&mut o), "the client asked itself");
    }

    #[test]
    fn the_filter_gives_the_stream_without_the_option() {
        let with = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"usage\\\":null\"}}],\"usage\":null}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3}}\n\n",
            "data: [DONE]\n\n",
        );
        let without = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"usage\\\":null\"}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        for split in [1usize, 2, 7, 33, with.len()] {
            let mut f = UsageChunkFilter::default();
            let mut out = Vec::new();
            for c in with.as_bytes().chunks(split) {
                out.extend_from_slice(&f.filter(c));
            }
            out.extend_from_slice(&f.finish());
            assert_eq!(std::str::from_utf8(&out).unwrap(), without, "split {split}");
        }
    }

    #[test]
    fn requested_limits_are_read_per_dialect() {
        let o = RawObject::parse(br#"{"max_tokens":10,"max_completion_tokens":20}"#).unwrap();
        assert_eq!(requested_output(Dialect::OpenAiChat, &o), Some(20));
        assert_eq!(requested_output(Dialect::AnthropicMessages, &o), Some(10));
        let o = RawObject::parse(br#"{"generationConfig":{"maxOutputTokens":30}}"#).unwrap();
        assert_eq!(requested_output(Dialect::Gemini, &o), Some(30));
        assert!(RawObject::parse(b"[1]").is_err());
    }
}
