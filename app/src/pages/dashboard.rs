//! The dashboard: keys and accounts (by state), today's usage and cost, realtime rates, the
//! usage trend, today's model distribution, and the models requested without a price.

use leptos::prelude::*;

use super::{
    charts::{ModelChart, TrendChart},
    load_error, CARD,
};
use crate::{
    domain::{format_usd, DashboardSummary, UnpricedModel},
    server_fns::get_dashboard,
};

#[component]
pub fn DashboardPage() -> impl IntoView {
    let summary = Resource::new(|| (), |_| get_dashboard());
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || summary.get().map(|result| match result {
                Ok(s) => view! { <Dashboard summary=s /> }.into_any(),
                Err(e) => load_error(&e),
            })}
        </Suspense>
    }
}

fn state_label(state: &str) -> &'static str {
    match state {
        "normal" => "normal",
        "cooling_down" => "cooling down",
        "rate_limited" => "rate limited",
        "blocked" => "blocked",
        "error" => "error",
        _ => "paused",
    }
}

#[component]
fn Dashboard(summary: DashboardSummary) -> impl IntoView {
    let t = summary.today;
    view! {
        <div class="mb-6 flex flex-wrap items-center justify-between gap-2">
            <h1 class="text-2xl font-semibold">"Dashboard"</h1>
            <span id="signed-in-as" class="text-sm text-slate-500 dark:text-slate-400">
                "Signed in as " {summary.username.clone()} " · store: " {summary.store_engine.clone()}
            </span>
        </div>
        <div class="grid grid-cols-1 gap-4 sm:grid-cols-2 lg:grid-cols-4">
            <Card id="card-keys" title="API keys" value=summary.total_keys.to_string()
                detail=format!("{} active", summary.active_keys) />
            <Card id="card-accounts" title="Accounts" value=summary.total_accounts.to_string()
                detail=format!("{} schedulable", summary.schedulable_accounts) />
            <Card id="card-requests" title="Requests today" value=t.requests.to_string()
                detail=format!("{} tokens", t.all_tokens()) />
            <Card id="card-cost" title="Cost today" value=format_usd(t.cost_nanos)
                detail=format!("{:.1} RPM · {:.0} TPM (last 5 min)", summary.rpm, summary.tpm) />
        </div>
        <div class="mt-4 grid grid-cols-1 gap-4 lg:grid-cols-2">
            <div class=CARD>
                <h2 class="mb-2 font-semibold">"Accounts by state"</h2>
                <ul id="account-states" class="grid grid-cols-2 gap-2 text-sm sm:grid-cols-3">
                    {summary.accounts_by_state.iter().map(|(state, n)| view! {
                        <li data-state=state.clone() class="flex justify-between rounded-md bg-slate-50 px-2 py-1 dark:bg-slate-800">
                            <span>{state_label(state)}</span><span class="font-semibold">{*n}</span>
                        </li>
                    }).collect_view()}
                </ul>
            </div>
            <div class=CARD>
                <h2 class="mb-2 font-semibold">"Tokens today"</h2>
                <dl class="grid grid-cols-2 gap-2 text-sm sm:grid-cols-4">
                    <div><dt class="text-slate-500 dark:text-slate-400">"Input"</dt><dd id="tok-input">{t.input_tokens}</dd></div>
                    <div><dt class="text-slate-500 dark:text-slate-400">"Output"</dt><dd id="tok-output">{t.output_tokens}</dd></div>
                    <div><dt class="text-slate-500 dark:text-slate-400">"Cache write"</dt><dd id="tok-cache-write">{t.cache_create_tokens()}</dd></div>
                    <div><dt class="text-slate-500 dark:text-slate-400">"Cache read"</dt><dd id="tok-cache-read">{t.cache_read_tokens}</dd></div>
                </dl>
            </div>
        </div>
        <div class="mt-4 grid grid-cols-1 gap-4 lg:grid-cols-2">
            <div class=CARD>
                <h2 class="mb-2 font-semibold">"Last 14 days"</h2>
                <TrendChart points=summary.trend.clone() />
            </div>
            <div class=CARD>
                <h2 class="mb-2 font-semibold">"Models today"</h2>
                <ModelChart models=summary.models.clone() />
            </div>
        </div>
        <UnpricedModels models=summary.unpriced_models.clone() />
    }
}

/// Models requested without a price: billed at the fallback price (records flagged) or
/// refused, per `UNPRICED_MODEL_POLICY`. Add them to the pricing overrides file.
#[component]
fn UnpricedModels(models: Vec<UnpricedModel>) -> impl IntoView {
    if models.is_empty() {
        return view! {
            <p id="unpriced-models" class="mt-4 text-sm text-slate-500 dark:text-slate-400">
                "Every model requested has a price."
            </p>
        }
        .into_any();
    }
    view! {
        <div id="unpriced-models" class=format!("mt-4 {CARD} border-amber-400 dark:border-amber-600")>
            <h2 class="mb-1 font-semibold">"Models without a price"</h2>
            <p class="mb-2 text-sm text-slate-500 dark:text-slate-400">
                "Billed at the fallback model's price (records flagged) or refused; add them to the pricing overrides file."
            </p>
            <table class="w-full text-left text-sm">
                <thead><tr>
                    <th class="py-1">"Model"</th><th>"Billed at fallback"</th><th>"Refused"</th><th>"Last seen"</th>
                </tr></thead>
                <tbody>
                    {models.into_iter().map(|m| {
                        let name = m.model.clone();
                        view! {
                        <tr data-model=name class="border-t border-slate-200 dark:border-slate-700">
                            <td class="py-1 font-mono break-all">{m.model}</td>
                            <td>{m.requests}</td>
                            <td>{m.refused}</td>
                            <td class="whitespace-nowrap">{m.last_seen}</td>
                        </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
fn Card(id: &'static str, title: &'static str, value: String, detail: String) -> impl IntoView {
    view! {
        <div id=id class=CARD>
            <div class="text-sm text-slate-500 dark:text-slate-400">{title}</div>
            <div class="mt-1 text-2xl font-semibold">{value}</div>
            <div class="mt-1 text-xs text-slate-500 dark:text-slate-400">{detail}</div>
        </div>
    }
}
