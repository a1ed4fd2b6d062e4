//! Webhook notifications for account and quota events.
//!
//! [`Notifier::notify`] is called from hot paths (the relay, the scheduler): it never awaits,
//! only dedupes and puts the event on a bounded queue. A worker task takes events off the
//! queue and delivers each to every enabled channel in its own task, so one slow or dead
//! channel never delays the others. Each delivery has its own timeout and retries.
//!
//! Channel URLs can hold tokens (Telegram bot tokens, DingTalk access tokens, Bark device
//! keys) and secrets are signing keys or mail passwords: logs name a channel by its name and
//! kind only, and error texts never include the URL.

pub mod channels;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use app::domain::{Settings, WebhookChannel};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;

/// Where the notifier reads the current settings (the channels and the on/off switch) from.
/// In the server: `let c = state.settings.clone(); Arc::new(move || c.get())`.
pub type SettingsSource = Arc<dyn Fn() -> Arc<Settings> + Send + Sync>;

/// Events waiting for the worker; beyond this `notify` drops (and warns).
const QUEUE_CAPACITY: usize = 1024;
/// Past this many remembered (kind, subject) pairs, expired ones are pruned.
const DEDUPE_PRUNE_AT: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    RateLimited,
    Recovered,
    AuthError,
    Blocked,
    RefreshFailed,
    QuotaWarning,
    QuotaExceeded,
    FiveHourWarning,
    Test,
}

impl EventKind {
    /// The short title shown in messages and mail subjects.
    pub fn title(self) -> &'static str {
        match self {
            EventKind::RateLimited => "Rate limited",
            EventKind::Recovered => "Recovered",
            EventKind::AuthError => "Authentication error",
            EventKind::Blocked => "Blocked",
            EventKind::RefreshFailed => "Token refresh failed",
            EventKind::QuotaWarning => "Quota warning",
            EventKind::QuotaExceeded => "Quota exceeded",
            EventKind::FiveHourWarning => "5-hour window warning",
            EventKind::Test => "Test notification",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub kind: EventKind,
    /// Account or key id the event is about.
    pub subject: String,
    /// Human name (account name / key name).
    pub name: String,
    pub platform: String,
    pub message: String,
    /// Serialized as RFC 3339 (the crate's chrono has no serde feature).
    #[serde(serialize_with = "rfc3339")]
    pub at: chrono::DateTime<chrono::Utc>,
}

fn rfc3339<S: serde::Serializer>(
    at: &chrono::DateTime<chrono::Utc>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339())
}

impl Event {
    /// An event stamped now.
    pub fn new(
        kind: EventKind,
        subject: impl Into<String>,
        name: impl Into<String>,
        platform: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Event {
            kind,
            subject: subject.into(),
            name: name.into(),
            platform: platform.into(),
            message: message.into(),
            at: chrono::Utc::now(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// Attempts per delivery, the first included (at least 1 is made).
    pub attempts: u32,
    /// Wait before the first retry; doubles for each further one.
    pub base_delay: Duration,
    /// Limit of one attempt (connect, send and answer).
    pub timeout: Duration,
    /// The same (kind, subject) is not sent twice within this.
    pub cooldown: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            attempts: 3,
            base_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            cooldown: Duration::from_secs(5 * 60),
        }
    }
}

/// Sends events to the webhook channels of the settings. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    /// When each (kind, subject) was last queued, for the cooldown.
    recent: Arc<Mutex<HashMap<(EventKind, String), Instant>>>,
}

/// What the worker, the delivery tasks and `test` share.
struct Shared {
    settings: SettingsSource,
    config: NotifyConfig,
    /// One client for every delivery: connection pools and TLS set-up are reused.
    client: reqwest::Client,
}

/// Why one attempt failed: `Retry` for network errors, timeouts and non-2xx answers;
/// `Fatal` for a channel configuration no retry can fix.
enum Failure {
    Retry(String),
    Fatal(String),
}

impl Notifier {
    /// Spawns the sending worker (a tokio task). Must be called inside a tokio runtime. The
    /// worker ends when the last clone of the notifier is dropped.
    pub fn start(settings: SettingsSource, config: NotifyConfig) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("crs-webhook/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeout)
            .build()
            .unwrap_or_else(|e| {
                // Only a broken TLS backend makes the builder fail; fall back to defaults.
                tracing::error!(error = %e, "webhook HTTP client: falling back to defaults");
                reqwest::Client::new()
            });
        let shared = Arc::new(Shared {
            settings,
            config,
            client,
        });
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(worker(shared.clone(), rx));
        Notifier {
            tx,
            shared,
            recent: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Queues an event for every enabled channel. Never blocks and never awaits: does
    /// nothing when notifications are off or no channel is enabled, drops repeats of the same
    /// (kind, subject) within the cooldown, and drops (with a warning) when the queue is full.
    pub fn notify(&self, event: Event) {
        let settings = (self.shared.settings)();
        if !settings.webhooks_enabled || !settings.webhooks.iter().any(|c| c.enabled) {
            return;
        }
        let key = (event.kind, event.subject.clone());
        let now = Instant::now();
        let cooldown = self.shared.config.cooldown;
        {
            let mut recent = self.recent.lock();
            if let Some(last) = recent.get(&key) {
                if now.duration_since(*last) < cooldown {
                    return;
                }
            }
            if recent.len() >= DEDUPE_PRUNE_AT {
                recent.retain(|_, t| now.duration_since(*t) < cooldown);
            }
            recent.insert(key.clone(), now);
        }
        if let Err(e) = self.tx.try_send(event) {
            let full = matches!(e, mpsc::error::TrySendError::Full(_));
            // Not sent, so it must not hold back the next one of its kind.
            self.recent.lock().remove(&key);
            tracing::warn!(
                kind = ?key.0,
                reason = if full { "queue full" } else { "worker stopped" },
                "webhook event dropped"
            );
        }
    }

    /// The settings page's test button: sends one `Test` event to this channel now (with
    /// retries), returning Ok or the last error text. Ignores the enabled switches.
    pub async fn test(&self, channel: &WebhookChannel) -> Result<(), String> {
        let settings = (self.shared.settings)();
        let event = Event::new(
            EventKind::Test,
            "test",
            channel.name.clone(),
            "",
            "this channel works",
        );
        deliver(&self.shared, channel, &settings.site_name, &event).await
    }
}

async fn worker(shared: Arc<Shared>, mut rx: mpsc::Receiver<Event>) {
    while let Some(event) = rx.recv().await {
        // Read at send time: channels switched off since `notify` are skipped.
        let settings = (shared.settings)();
        if !settings.webhooks_enabled {
            continue;
        }
        let event = Arc::new(event);
        for channel in settings.webhooks.iter().filter(|c| c.enabled) {
            let (shared, channel, event) = (shared.clone(), channel.clone(), event.clone());
            let site_name = settings.site_name.clone();
            // One task per delivery: a hanging channel only holds up itself.
            tokio::spawn(async move {
                if let Err(e) = deliver(&shared, &channel, &site_name, &event).await {
                    tracing::warn!(
                        channel = %channel.name,
                        kind = %channel.kind,
                        event = ?event.kind,
                        error = %e,
                        "webhook delivery failed"
                    );
                }
            });
        }
    }
}

/// One delivery with retries: `attempts` tries, waiting `base_delay * 2^n` before retry n+1.
async fn deliver(
    shared: &Shared,
    channel: &WebhookChannel,
    site_name: &str,
    event: &Event,
) -> Result<(), String> {
    let config = &shared.config;
    let attempts = config.attempts.max(1);
    let mut last = String::new();
    for n in 0..attempts {
        if n > 0 {
            let factor = 1u32 << (n - 1).min(16);
            tokio::time::sleep(config.base_delay.saturating_mul(factor)).await;
        }
        let attempt = attempt(shared, channel, site_name, event);
        let result = match tokio::time::timeout(config.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Retry(format!(
                "timed out after {} ms",
                config.timeout.as_millis()
            ))),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(e)) => {
                tracing::debug!(channel = %channel.name, kind = %channel.kind, attempt = n + 1, error = %e, "webhook attempt failed");
                last = e;
            }
        }
    }
    Err(format!("{last} (after {attempts} attempts)"))
}

async fn attempt(
    shared: &Shared,
    channel: &WebhookChannel,
    site_name: &str,
    event: &Event,
) -> Result<(), Failure> {
    if channel.kind == "smtp" {
        return send_mail(shared, channel, site_name, event).await;
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let d = channels::http_delivery(channel, site_name, event, now_ms).map_err(Failure::Fatal)?;
    let mut req = shared
        .client
        .post(&d.url)
        .timeout(shared.config.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(d.body);
    for (name, value) in d.headers {
        req = req.header(name, value);
    }
    let resp = req.send().await.map_err(|e| {
        // A malformed URL fails the same way every time; anything else may pass later.
        if e.is_builder() {
            Failure::Fatal(http_error(e))
        } else {
            Failure::Retry(http_error(e))
        }
    })?;
    let status = resp.status();
    // The body is small (chat APIs answer a few bytes); an unreadable one is not an error.
    let body = resp.bytes().await.unwrap_or_default();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let text = channels::truncate(text.trim(), 200);
        return Err(Failure::Retry(if text.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {text}")
        }));
    }
    match channels::body_error(&channel.kind, &body) {
        // A rejected signature or keyword filter: the same request would be rejected again.
        Some(e) => Err(Failure::Fatal(e)),
        None => Ok(()),
    }
}

/// A reqwest error as text, without the URL (it can carry tokens) but with its causes.
fn http_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn send_mail(
    shared: &Shared,
    channel: &WebhookChannel,
    site_name: &str,
    event: &Event,
) -> Result<(), Failure> {
    use lettre::{
        message::{header::ContentType, Mailbox},
        transport::smtp::authentication::Credentials,
        AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    };

    let target = channels::parse_smtp_url(&channel.url).map_err(Failure::Fatal)?;
    let parse = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|e| Failure::Fatal(format!("smtp: bad address {a:?}: {e}")))
    };
    let mut message = Message::builder()
        .from(parse(&target.from)?)
        .subject(channels::mail_subject(site_name, event))
        .header(ContentType::TEXT_PLAIN);
    for to in &target.to {
        message = message.to(parse(to)?);
    }
    let message = message
        .body(channels::message_text(site_name, event))
        .map_err(|e| Failure::Fatal(format!("smtp: cannot build the message: {e}")))?;

    // Built per delivery: mail is rare, and the URL may change between two.
    let builder = if target.tls {
        AsyncSmtpTransport::<Tokio1Executor>::relay(&target.host)
            .map_err(|e| Failure::Fatal(format!("smtp: {e}")))?
    } else {
        // Plain SMTP, meant for a local relay.
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&target.host)
    };
    let mut builder = builder
        .port(target.port)
        .timeout(Some(shared.config.timeout));
    if !target.user.is_empty() {
        builder = builder.credentials(Credentials::new(
            target.user.clone(),
            channel.secret.clone(),
        ));
    }
    let transport = builder.build();
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| Failure::Retry(format!("smtp: {e}")))
}
