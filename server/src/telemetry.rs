//! Prometheus metrics: every name in one place, and the process-wide recorder.
//!
//! The recorder is installed once per process (the `metrics` macros use a global one); several
//! relays in one test process share it, so tests read differences, not absolute values.

use std::{sync::OnceLock, time::Duration};

use app::domain::TokenUsage;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets, in seconds: sub-millisecond overhead up to long generations.
const BUCKETS: [f64; 18] = [
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 300.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the recorder (once); `None` if another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets(&BUCKETS).ok()?;
            match builder.install_recorder() {
                Ok(h) => {
                    // Histogram samples are kept raw until an upkeep folds them into buckets;
                    // with nobody scraping /metrics they grew without bound (a soak of 1.3M
                    // requests took the relay from 57 to 249 MB). A plain thread, as this may
                    // run before any async runtime exists.
                    let keeper = h.clone();
                    let spawned = std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || loop {
                            std::thread::sleep(UPKEEP);
                            keeper.run_upkeep();
                        });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "metrics upkeep thread not started");
                    }
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// The text exposition of every metric.
pub fn render() -> String {
    match install() {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    }
}

/// What one relayed exchange did, recorded when it ends.
pub struct Finished<'a> {
    pub route: &'static str,
    pub platform: &'static str,
    pub model: &'a str,
    pub status: u16,
    pub stream: bool,
    pub usage: &'a TokenUsage,
    pub cost_nanos: u64,
    /// From sending upstream to the last byte (or the failure).
    pub upstream: Duration,
    /// From sending upstream to the first byte of the answer.
    pub first_byte: Option<Duration>,
    /// The whole request as the client saw it.
    pub total: Duration,
}

pub fn relayed(f: Finished<'_>) {
    let labels = [
        ("route", f.route.to_string()),
        ("platform", f.platform.to_string()),
        ("model", f.model.to_string()),
        ("status", f.status.to_string()),
        ("stream", f.stream.to_string()),
    ];
    counter!("crs_relay_requests_total", &labels).increment(1);
    let per_model = [
        ("platform", f.platform.to_string()),
        ("model", f.model.to_string()),
    ];
    for (kind, n) in [
        ("input", f.usage.input_tokens),
        ("output", f.usage.output_tokens),
        ("cache_create", f.usage.cache_create_tokens()),
        ("cache_read", f.usage.cache_read_tokens),
    ] {
        if n > 0 {
            let mut l = per_model.to_vec();
            l.push(("kind", kind.to_string()));
            counter!("crs_tokens_total", &l).increment(n);
        }
    }
    if f.cost_nanos > 0 {
        counter!("crs_cost_nanodollars_total", &per_model).increment(f.cost_nanos);
    }
    let plat = [("platform", f.platform.to_string())];
    histogram!("crs_upstream_duration_seconds", &plat).record(f.upstream.as_secs_f64());
    if let Some(ttfb) = f.first_byte {
        histogram!("crs_upstream_first_byte_seconds", &plat).record(ttfb.as_secs_f64());
    }
    histogram!("crs_request_duration_seconds", &plat).record(f.total.as_secs_f64());
    histogram!("crs_relay_overhead_seconds", &plat)
        .record(f.total.saturating_sub(f.upstream).as_secs_f64());
}

/// A request refused by a key limit (`concurrency`, `rate_window`, `daily_cost`, …).
/// A request found its in-memory key copy out of date and started over.
pub fn key_copy_outdated() {
    counter!("crs_key_copy_outdated_total").increment(1);
}

/// A request for a model without a price (`outcome`: `fallback` or `refused`).
pub fn unpriced_request(outcome: &'static str) {
    counter!("crs_unpriced_requests_total", "outcome" => outcome).increment(1);
}

pub fn limit_rejected(kind: &str) {
    counter!("crs_limit_rejections_total", "kind" => kind.to_string()).increment(1);
}

/// One store round trip on the hot path.
pub fn store_round_trip(engine: &'static str, op: &'static str, took: Duration) {
    histogram!("crs_store_round_trip_seconds", "engine" => engine, "op" => op)
        .record(took.as_secs_f64());
}

/// One coalesced usage write of `events` finished requests (events / writes = batch size).
pub fn accounting_batch(events: usize) {
    counter!("crs_accounting_writes_total").increment(1);
    counter!("crs_accounting_events_total").increment(events as u64);
}

/// Requests in flight to an account, while the guard lives.
pub struct InFlight {
    account: String,
}

impl InFlight {
    pub fn start(account: &str) -> Self {
        gauge!("crs_upstream_in_flight", "account" => account.to_string()).increment(1.0);
        InFlight {
            account: account.to_string(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!("crs_upstream_in_flight", "account" => self.account.clone()).decrement(1.0);
    }
}

/// Accounts per state, set when metrics are scraped.
pub fn accounts_by_state(counts: &[(String, u64)]) {
    for (state, n) in counts {
        gauge!("crs_accounts", "state" => state.clone()).set(*n as f64);
    }
}

/// An OTLP/HTTP trace pipeline to `endpoint` (the collector's base URL; spans go to
/// `<endpoint>/v1/traces`), batched off the request path. Keep the provider to flush it on
/// shutdown.
pub fn otlp_tracer_provider(
    endpoint: &str,
) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?;
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("crs")
                .build(),
        )
        .build())
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider`.
pub fn otel_layer<S>(
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider;
    tracing_opentelemetry::layer().with_tracer(provider.tracer("crs"))
}
