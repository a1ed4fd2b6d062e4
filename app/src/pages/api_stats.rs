//! The public stats page: a key holder enters the key (a password field, posted in the body)
//! and sees usage and every limit with its progress.

use leptos::prelude::*;

use super::{error_text, TABLE_BOX, TD, TH};
use crate::{
    domain::{format_usd, KeyStats, LimitBar, ModelUsage, UsageCounters},
    server_fns::LookupKeyStats,
};

#[component]
pub fn ApiStatsPage() -> impl IntoView {
    let query = ServerAction::<LookupKeyStats>::new();
    let result = move || query.value().get();
    let input = "w-full rounded-md border border-slate-300 bg-white px-3 py-2 dark:border-slate-700 dark:bg-slate-800";
    view! {
        <section class="mx-auto max-w-4xl">
            <h1 class="mb-2 text-2xl font-semibold">"API key usage"</h1>
            <p class="mb-4 text-sm text-slate-500 dark:text-slate-400">
                "Enter your API key to see its usage and limits. The key is sent only in the request body."
            </p>
            <ActionForm action=query>
                <div class="flex flex-col gap-2 sm:flex-row">
                    <input id="stats-key" type="password" name="api_key" placeholder="cr_…" autocomplete="off" required class=input />
                    <button id="stats-submit" type="submit" class="whitespace-nowrap rounded-md bg-indigo-600 px-4 py-2 font-medium text-white hover:bg-indigo-500">
                        "Show usage"
                    </button>
                </div>
            </ActionForm>
            {move || {
                result()
                    .map(|r| match r {
                        Ok(stats) => view! { <Stats stats /> }.into_any(),
                        Err(e) => view! { <p id="stats-error" role="alert" class="mt-4 text-red-600 dark:text-red-400">{error_text(&e)}</p> }.into_any(),
                    })
            }}
        </section>
    }
}

#[component]
fn Stats(stats: KeyStats) -> impl IntoView {
    let status = if stats.is_active {
        "active"
    } else {
        "disabled"
    };
    let limits = stats.limits.clone();
    view! {
        <div id="stats-result" class="mt-6">
            <div class="mb-4 flex flex-wrap items-baseline gap-3">
                <h2 id="stats-name" class="text-xl font-semibold">{stats.name.clone()}</h2>
                <span class="rounded-full bg-slate-200 px-2 py-0.5 text-xs dark:bg-slate-800">{status}</span>
                {stats.expires_at.clone().map(|e| view! { <span class="text-xs text-slate-500">"expires " {e}</span> })}
            </div>
            <div class="grid grid-cols-1 gap-4 sm:grid-cols-3">
                <Period id="stats-today" title="Today" c=stats.today />
                <Period id="stats-month" title="This month" c=stats.month />
                <Period id="stats-total" title="All time" c=stats.total />
            </div>
            <h3 class="mt-6 mb-2 font-semibold">"By model"</h3>
            <ModelTable models=stats.models.clone() />
            <h3 class="mt-6 mb-2 font-semibold">"Limits"</h3>
            <Show when=move || limits.is_empty()>
                <p class="text-sm text-slate-500">"This key has no limits."</p>
            </Show>
            <div id="stats-limits" class="grid grid-cols-1 gap-3 sm:grid-cols-2">
                {stats.limits.into_iter().map(|bar| view! { <Bar bar /> }).collect_view()}
            </div>
        </div>
    }
}

#[component]
fn Period(id: &'static str, title: &'static str, c: UsageCounters) -> impl IntoView {
    view! {
        <div id=id class="rounded-xl border border-slate-200 bg-white p-4 dark:border-slate-800 dark:bg-slate-900">
            <div class="text-sm text-slate-500 dark:text-slate-400">{title}</div>
            <div class="mt-1 text-2xl font-semibold" data-requests=c.requests>{c.requests} " requests"</div>
            <div class="mt-1 text-sm">{c.all_tokens()} " tokens · " {format_usd(c.cost_nanos)}</div>
        </div>
    }
}

#[component]
fn Bar(bar: LimitBar) -> impl IntoView {
    let pct = bar.percent();
    let color = if pct >= 90.0 {
        "bg-red-500"
    } else if pct >= 70.0 {
        "bg-amber-500"
    } else {
        "bg-emerald-500"
    };
    let fmt = |v: f64, unit: &str| {
        if unit == "$" {
            format!("${v:.4}")
        } else {
            format!("{v:.0}")
        }
    };
    view! {
        <div class="limit-bar rounded-xl border border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900">
            <div class="flex justify-between text-sm">
                <span class="limit-label">{bar.label.clone()}</span>
                <span>{fmt(bar.current, &bar.unit)} " / " {fmt(bar.limit, &bar.unit)}</span>
            </div>
            <div class="mt-2 h-2 w-full rounded bg-slate-200 dark:bg-slate-800">
                <div class=format!("h-2 rounded {color}") style=format!("width: {pct:.1}%")></div>
            </div>
            {bar.reset_at.clone().map(|r| view! { <div class="mt-1 text-xs text-slate-500">"resets " {r}</div> })}
        </div>
    }
}

#[component]
fn ModelTable(models: Vec<ModelUsage>) -> impl IntoView {
    if models.is_empty() {
        return view! { <p class="text-sm text-slate-500">"No requests yet."</p> }.into_any();
    }
    view! {
        <div class=TABLE_BOX>
            <table id="stats-models" class="w-full text-sm">
                <thead><tr>
                    <th class=TH>"Model"</th><th class=TH>"Requests"</th><th class=TH>"Input"</th><th class=TH>"Output"</th>
                    <th class=TH>"Cache write"</th><th class=TH>"Cache read"</th><th class=TH>"Cost"</th>
                </tr></thead>
                <tbody>
                    {models.into_iter().map(|m| view! {
                        <tr class="model-row">
                            <td class=format!("{TD} font-mono text-xs")>{m.model}</td>
                            <td class=TD>{m.usage.requests}</td>
                            <td class=TD>{m.usage.input_tokens}</td>
                            <td class=TD>{m.usage.output_tokens}</td>
                            <td class=TD>{m.usage.cache_create_tokens()}</td>
                            <td class=TD>{m.usage.cache_read_tokens}</td>
                            <td class=TD>{format_usd(m.usage.cost_nanos)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}
