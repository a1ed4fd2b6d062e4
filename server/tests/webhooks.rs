//! Webhook notifications over real HTTP (an axum receiver on a free port) and real SMTP (a
//! minimal fake mail server on a free port).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use app::domain::{Settings, WebhookChannel};
use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, http::Uri, Router};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use crs::{
    notify::{Event, EventKind, Notifier, NotifyConfig, SettingsSource},
    testing::free_port,
};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type HmacSha256 = Hmac<Sha256>;

// ---------------------------------------------------------------------------------------------
// The HTTP receiver.

#[derive(Clone, Debug)]
struct Recorded {
    path: String,
    query: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn query_pairs(&self) -> HashMap<String, String> {
        reqwest::Url::parse(&format!("http://x/?{}", self.query))
            .expect("query")
            .query_pairs()
            .into_owned()
            .collect()
    }
}

#[derive(Clone, Copy, Default)]
enum Mode {
    #[default]
    Ok,
    /// 500 for the first N requests, then 200.
    FailFirst(usize),
    AlwaysFail,
    /// Sleeps 30 s before answering.
    Hang,
}

struct ReceiverState {
    mode: Mode,
    seen: AtomicUsize,
    records: Mutex<Vec<Recorded>>,
}

struct Receiver {
    base: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start(mode: Mode) -> Self {
        let state = Arc::new(ReceiverState {
            mode,
            seen: AtomicUsize::new(0),
            records: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(record).with_state(state.clone());
        let port = free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the receiver");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            base: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    fn records(&self) -> Vec<Recorded> {
        self.state.records.lock().clone()
    }

    fn count(&self) -> usize {
        self.state.records.lock().len()
    }

    /// Waits until at least `n` requests arrived (or `within` passed) and returns them all.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Recorded> {
        let end = Instant::now() + within;
        while self.count() < n && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.records()
    }

    fn find(&self, path: &str) -> Recorded {
        self.records()
            .into_iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("no request to {path}"))
    }
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let n = state.seen.fetch_add(1, Ordering::SeqCst);
    state.records.lock().push(Recorded {
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
    });
    match state.mode {
        Mode::Ok => (StatusCode::OK, "ok"),
        Mode::FailFirst(k) if n < k => (StatusCode::INTERNAL_SERVER_ERROR, "boom"),
        Mode::FailFirst(_) => (StatusCode::OK, "ok"),
        Mode::AlwaysFail => (StatusCode::INTERNAL_SERVER_ERROR, "boom"),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (StatusCode::OK, "late")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

const SITE: &str = "Test Relay";

/// Settings the test can change while the notifier runs.
struct Live(Arc<Mutex<Arc<Settings>>>);

impl Live {
    fn new(channels: Vec<WebhookChannel>, enabled: bool) -> Self {
        Live(Arc::new(Mutex::new(Arc::new(Settings {
            site_name: SITE.into(),
            webhooks: channels,
            webhooks_enabled: enabled,
            ..Default::default()
        }))))
    }

    fn source(&self) -> SettingsSource {
        let s = self.0.clone();
        Arc::new(move || s.lock().clone())
    }
}

fn channel(kind: &str, url: String, secret: &str) -> WebhookChannel {
    WebhookChannel {
        id: format!("id-{kind}"),
        kind: kind.into(),
        name: format!("{kind} channel"),
        url,
        secret: secret.into(),
        enabled: true,
    }
}

fn fast_config() -> NotifyConfig {
    NotifyConfig {
        attempts: 3,
        base_delay: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        cooldown: Duration::from_secs(60),
    }
}

fn start(channels: Vec<WebhookChannel>, config: NotifyConfig) -> (Notifier, Live) {
    let live = Live::new(channels, true);
    (Notifier::start(live.source(), config), live)
}

fn event(kind: EventKind, subject: &str) -> Event {
    Event {
        kind,
        subject: subject.into(),
        name: "Main account".into(),
        platform: "claude".into(),
        message: "429 from upstream".into(),
        at: chrono::Utc::now(),
    }
}

const TEXT: &str = "[Test Relay] Rate limited: Main account (claude) — 429 from upstream";

fn hmac_ok(key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(msg);
    mac.verify_slice(sig).is_ok()
}

// ---------------------------------------------------------------------------------------------
// 1. Payload shapes.

#[tokio::test]
async fn every_http_kind_gets_its_payload_shape() {
    let r = Receiver::start(Mode::Ok).await;
    let channels = vec![
        channel("slack", r.url("/slack"), ""),
        channel("discord", r.url("/discord"), ""),
        channel("wecom", r.url("/wecom?key=K"), ""),
        channel("dingtalk", r.url("/dingtalk?access_token=T"), ""),
        channel("feishu", r.url("/feishu"), ""),
        channel(
            "telegram",
            r.url("/botTOKEN/sendMessage?chat_id=-100123"),
            "",
        ),
        channel("bark", r.url("/DEVICEKEY"), ""),
        channel("custom", r.url("/custom"), ""),
    ];
    let (n, _live) = start(channels, fast_config());
    let ev = event(EventKind::RateLimited, "acc-1");
    let at = ev.at;
    n.notify(ev);
    let got = r.wait_for(8, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 8, "one request per channel: {got:?}");
    for rec in &got {
        assert_eq!(
            rec.headers.get("content-type").map(String::as_str),
            Some("application/json"),
            "{}",
            rec.path
        );
    }

    assert_eq!(r.find("/slack").json(), serde_json::json!({ "text": TEXT }));
    assert_eq!(
        r.find("/discord").json(),
        serde_json::json!({ "content": TEXT, "allowed_mentions": { "parse": [] } })
    );
    let wecom = r.find("/wecom");
    assert_eq!(wecom.query, "key=K");
    assert_eq!(
        wecom.json(),
        serde_json::json!({ "msgtype": "text", "text": { "content": TEXT } })
    );
    let ding = r.find("/dingtalk");
    assert_eq!(ding.query, "access_token=T", "no secret, no signature");
    assert_eq!(
        ding.json(),
        serde_json::json!({ "msgtype": "text", "text": { "content": TEXT } })
    );
    assert_eq!(
        r.find("/feishu").json(),
        serde_json::json!({ "msg_type": "text", "content": { "text": TEXT } })
    );
    let tg = r.find("/botTOKEN/sendMessage");
    assert_eq!(tg.query, "", "the chat id moves from the query to the body");
    assert_eq!(
        tg.json(),
        serde_json::json!({ "chat_id": "-100123", "text": TEXT })
    );
    assert_eq!(
        r.find("/DEVICEKEY").json(),
        serde_json::json!({ "title": SITE, "body": TEXT, "group": "crs" })
    );
    let custom = r.find("/custom");
    assert!(!custom.headers.contains_key("x-crs-signature"));
    assert_eq!(
        custom.json(),
        serde_json::json!({
            "service": "crs",
            "type": "rate_limited",
            "subject": "acc-1",
            "name": "Main account",
            "platform": "claude",
            "message": "429 from upstream",
            "timestamp": at.to_rfc3339(),
            "text": TEXT,
        })
    );
}

// ---------------------------------------------------------------------------------------------
// 2. and 3. Signatures.

#[tokio::test]
async fn dingtalk_and_feishu_signatures_verify() {
    let r = Receiver::start(Mode::Ok).await;
    let channels = vec![
        channel("dingtalk", r.url("/ding?access_token=T"), "SECding"),
        channel("feishu", r.url("/feishu"), "feishu-secret"),
    ];
    let (n, _live) = start(channels, fast_config());
    let before = chrono::Utc::now().timestamp_millis();
    n.notify(event(EventKind::AuthError, "acc-2"));
    assert_eq!(r.wait_for(2, Duration::from_secs(5)).await.len(), 2);
    let after = chrono::Utc::now().timestamp_millis();

    // DingTalk: timestamp (ms) and sign in the query; sign = b64(HMAC(secret, "ts\nsecret")).
    let ding = r.find("/ding");
    let q = ding.query_pairs();
    assert_eq!(q["access_token"], "T");
    let ts: i64 = q["timestamp"].parse().expect("ms timestamp");
    assert!(
        (before..=after).contains(&ts),
        "{before} <= {ts} <= {after}"
    );
    let sign = B64.decode(&q["sign"]).expect("base64 sign");
    let msg = format!("{ts}\nSECding");
    assert!(hmac_ok(b"SECding", msg.as_bytes(), &sign));
    assert!(!hmac_ok(b"SECwrong", msg.as_bytes(), &sign));
    // The raw query has the sign percent-encoded (base64's `+`, `/`, `=` would break it).
    assert!(!ding.query.contains('+') && !ding.query.contains("=="));

    // Feishu: timestamp (s, a string) and sign in the body; key = "ts\nsecret", msg = "".
    let feishu = r.find("/feishu").json();
    assert_eq!(feishu["msg_type"], "text");
    let ts_str = feishu["timestamp"].as_str().expect("timestamp string");
    let ts: i64 = ts_str.parse().expect("seconds");
    assert!((before / 1000..=after / 1000).contains(&ts));
    let sign = B64
        .decode(feishu["sign"].as_str().expect("sign"))
        .expect("base64 sign");
    assert!(hmac_ok(
        format!("{ts}\nfeishu-secret").as_bytes(),
        b"",
        &sign
    ));
    assert!(!hmac_ok(format!("{ts}\nwrong").as_bytes(), b"", &sign));
}

#[tokio::test]
async fn custom_signature_header_verifies() {
    let r = Receiver::start(Mode::Ok).await;
    let (n, _live) = start(
        vec![channel("custom", r.url("/hook"), "custom-secret")],
        fast_config(),
    );
    n.notify(event(EventKind::QuotaExceeded, "key-9"));
    let got = r.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    let rec = &got[0];
    let header = rec
        .headers
        .get("x-crs-signature")
        .expect("signature header");
    let hex_sig = header.strip_prefix("sha256=").expect("sha256= prefix");
    let sig = hex::decode(hex_sig).expect("hex");
    assert!(hmac_ok(b"custom-secret", &rec.body, &sig));
    assert!(!hmac_ok(b"other-secret", &rec.body, &sig));
    assert_eq!(rec.json()["type"], "quota_exceeded");
}

// ---------------------------------------------------------------------------------------------
// 4. and 5. Retries.

#[tokio::test]
async fn retries_until_delivered() {
    let r = Receiver::start(Mode::FailFirst(2)).await;
    let (n, _live) = start(vec![channel("slack", r.url("/s"), "")], fast_config());
    n.notify(event(EventKind::Blocked, "acc-3"));
    let got = r.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3, "500, 500, then 200");
    // Delivered: no fourth attempt follows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(r.count(), 3);
    for rec in r.records() {
        assert_eq!(
            rec.json()["text"].as_str().map(|t| t.contains("Blocked")),
            Some(true)
        );
    }
}

#[tokio::test]
async fn gives_up_after_the_attempts() {
    let r = Receiver::start(Mode::AlwaysFail).await;
    let (n, _live) = start(vec![channel("discord", r.url("/d"), "")], fast_config());
    n.notify(event(EventKind::RefreshFailed, "acc-4"));
    let got = r.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3);
    // Delays are 50 ms then 100 ms; a fourth attempt would come well within this.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(r.count(), 3, "exactly `attempts` requests");
}

// ---------------------------------------------------------------------------------------------
// 6. A hanging channel blocks neither the caller nor the other channels.

#[tokio::test]
async fn hanging_channel_blocks_nothing() {
    let slow = Receiver::start(Mode::Hang).await;
    let fast = Receiver::start(Mode::Ok).await;
    let config = NotifyConfig {
        attempts: 2,
        base_delay: Duration::from_millis(50),
        timeout: Duration::from_millis(200),
        cooldown: Duration::from_secs(60),
    };
    // The slow channel comes first, so it would hold up the fast one if sends were serial.
    let (n, _live) = start(
        vec![
            channel("slack", slow.url("/slow"), ""),
            channel("slack", fast.url("/fast"), ""),
        ],
        config,
    );
    let t = Instant::now();
    n.notify(event(EventKind::RateLimited, "acc-5"));
    let took = t.elapsed();
    assert!(took < Duration::from_millis(50), "notify took {took:?}");

    let got = fast.wait_for(1, Duration::from_secs(1)).await;
    assert_eq!(got.len(), 1, "the fast channel got its message within 1 s");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "fast channel waited {:?}",
        t.elapsed()
    );
    // The hanging one: each attempt is cut at 200 ms, then retried once, then abandoned.
    let slow_got = slow.wait_for(2, Duration::from_secs(3)).await;
    assert_eq!(slow_got.len(), 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(slow.count(), 2);
    assert_eq!(fast.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// 7. Dedupe.

#[tokio::test]
async fn same_kind_and_subject_within_cooldown_is_sent_once() {
    let r = Receiver::start(Mode::Ok).await;
    let (n, _live) = start(vec![channel("slack", r.url("/s"), "")], fast_config());
    n.notify(event(EventKind::RateLimited, "acc-6"));
    n.notify(event(EventKind::RateLimited, "acc-6"));
    n.notify(event(EventKind::RateLimited, "acc-7"));
    n.notify(event(EventKind::Recovered, "acc-6"));
    let got = r.wait_for(3, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.count(), 3, "{got:?}");
    let texts: Vec<String> = r
        .records()
        .iter()
        .map(|rec| rec.json()["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        texts.iter().filter(|t| t.contains("Rate limited")).count(),
        2
    );
    assert_eq!(texts.iter().filter(|t| t.contains("Recovered")).count(), 1);

    // After the cooldown the same pair goes out again.
    let r2 = Receiver::start(Mode::Ok).await;
    let config = NotifyConfig {
        cooldown: Duration::from_millis(100),
        ..fast_config()
    };
    let (n2, _live2) = start(vec![channel("slack", r2.url("/s"), "")], config);
    n2.notify(event(EventKind::QuotaWarning, "key-1"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    n2.notify(event(EventKind::QuotaWarning, "key-1"));
    assert_eq!(r2.wait_for(2, Duration::from_secs(5)).await.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 8. Switched off.

#[tokio::test]
async fn disabled_sends_nothing() {
    let r = Receiver::start(Mode::Ok).await;
    // Notifications off as a whole.
    let live = Live::new(vec![channel("slack", r.url("/off"), "")], false);
    let n = Notifier::start(live.source(), fast_config());
    n.notify(event(EventKind::AuthError, "acc-8"));
    // Only channel switched off.
    let mut off = channel("slack", r.url("/channel-off"), "");
    off.enabled = false;
    let (n2, _live2) = start(vec![off.clone()], fast_config());
    n2.notify(event(EventKind::AuthError, "acc-8"));
    // One channel on, one off: only the enabled one is used.
    let (n3, _live3) = start(vec![off, channel("slack", r.url("/on"), "")], fast_config());
    n3.notify(event(EventKind::AuthError, "acc-8"));

    let got = r.wait_for(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(r.count(), 1, "{got:?}");
    assert_eq!(r.records()[0].path, "/on");

    // Switching on later: the earlier, dropped event is not replayed; a new one is sent.
    *live.0.lock() = Arc::new(Settings {
        site_name: SITE.into(),
        webhooks: vec![channel("slack", r.url("/off"), "")],
        webhooks_enabled: true,
        ..Default::default()
    });
    n.notify(event(EventKind::AuthError, "acc-8"));
    r.wait_for(2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(r.count(), 2);
    assert_eq!(r.records()[1].path, "/off");
}

// ---------------------------------------------------------------------------------------------
// 9. The test button.

#[tokio::test]
async fn test_button_reports_success_and_failure() {
    let good = Receiver::start(Mode::Ok).await;
    let bad = Receiver::start(Mode::AlwaysFail).await;
    // Notifications off and the channel disabled: `test` ignores both.
    let live = Live::new(vec![], false);
    let n = Notifier::start(live.source(), fast_config());
    let mut ch = channel("custom", good.url("/t"), "s");
    ch.enabled = false;
    assert_eq!(n.test(&ch).await, Ok(()));
    let got = good.records();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["type"], "test");

    let ch = channel("slack", bad.url("/t?token=SECRET-TOKEN"), "");
    let err = n.test(&ch).await.expect_err("always 500");
    assert!(err.contains("500"), "{err}");
    assert!(
        !err.contains("SECRET-TOKEN"),
        "errors never echo the URL: {err}"
    );
    assert_eq!(bad.count(), 3, "retried up to `attempts`");

    // A network error (nothing listens) is an error too, without the URL.
    let ch = channel(
        "slack",
        format!("http://127.0.0.1:{}/x?k=SECRET-TOKEN", free_port()),
        "",
    );
    let err = n.test(&ch).await.expect_err("connection refused");
    assert!(!err.contains("SECRET-TOKEN"), "{err}");

    // A configuration error is reported at once.
    let ch = channel("telegram", good.url("/botX/sendMessage"), "");
    let err = n.test(&ch).await.expect_err("no chat id");
    assert!(err.contains("chat_id"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 10. SMTP.

#[derive(Default, Debug)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
    commands: Vec<String>,
}

/// Speaks just enough SMTP for one client at a time: no AUTH, no TLS.
async fn fake_smtp() -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind smtp");
    let mails = Arc::new(Mutex::new(Vec::new()));
    let out = mails.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let mails = mails.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = sock.into_split();
                let mut rd = BufReader::new(rd);
                let mut mail = Mail::default();
                let _ = wr.write_all(b"220 fake.smtp ESMTP\r\n").await;
                let mut line = String::new();
                loop {
                    line.clear();
                    if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                        break;
                    }
                    let cmd = line.trim_end().to_string();
                    mail.commands.push(cmd.clone());
                    let upper = cmd.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 fake.smtp\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        mail.from = cmd[10..].trim().to_string();
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        mail.to.push(cmd[8..].trim().to_string());
                        b"250 OK\r\n"
                    } else if upper == "DATA" {
                        let _ = wr.write_all(b"354 go ahead\r\n").await;
                        loop {
                            line.clear();
                            if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                            mail.data.push_str(&line);
                        }
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = wr.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        b"250 OK\r\n"
                    };
                    let _ = wr.write_all(reply).await;
                }
                mails.lock().push(mail);
            });
        }
    });
    (port, out)
}

/// Undoes the body's transfer encoding (the em dash makes lettre pick one).
fn decode_body(data: &str) -> String {
    let (head, body) = data.split_once("\r\n\r\n").expect("headers and body");
    let head_lower = head.to_ascii_lowercase();
    if head_lower.contains("content-transfer-encoding: base64") {
        let joined: String = body.split_whitespace().collect();
        String::from_utf8(B64.decode(joined).expect("base64 body")).expect("utf-8")
    } else if head_lower.contains("content-transfer-encoding: quoted-printable") {
        let soft = body.replace("=\r\n", "");
        let bytes = soft.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&soft[i + 1..i + 3], 16).expect("qp hex"));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf-8")
    } else {
        body.to_string()
    }
}

#[tokio::test]
async fn smtp_channel_sends_one_mail() {
    let (port, mails) = fake_smtp().await;
    let url = format!("smtp://127.0.0.1:{port}?from=relay@example.com&to=ops@example.com");
    let (n, _live) = start(vec![channel("smtp", url.clone(), "")], fast_config());
    n.notify(event(EventKind::RateLimited, "acc-10"));

    let end = Instant::now() + Duration::from_secs(5);
    while mails.lock().is_empty() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    {
        let mails = mails.lock();
        assert_eq!(mails.len(), 1, "{mails:?}");
        let mail = &mails[0];
        assert!(mail.from.contains("relay@example.com"), "{mail:?}");
        assert_eq!(mail.to.len(), 1);
        assert!(mail.to[0].contains("ops@example.com"));
        assert!(
            !mail
                .commands
                .iter()
                .any(|c| c.to_ascii_uppercase().starts_with("AUTH")),
            "no AUTH without a user"
        );
        assert!(
            mail.data.contains("Subject: [Test Relay] Rate limited"),
            "{}",
            mail.data
        );
        let body = decode_body(&mail.data);
        assert!(body.contains(TEXT), "{body:?}");
    }

    // The test button works for mail too.
    assert_eq!(n.test(&channel("smtp", url, "")).await, Ok(()));
    let end = Instant::now() + Duration::from_secs(2);
    while mails.lock().len() < 2 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let subject_ok = mails.lock()[1]
        .data
        .contains("Subject: [Test Relay] Test notification");
    assert!(subject_ok);
}
