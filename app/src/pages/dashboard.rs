use leptos::prelude::*;
use leptos_router::components::Redirect;

use super::error_text;
use crate::{
    domain::{format_usd, DashboardSummary},
    server_fns::{get_dashboard, AdminLogout, UNAUTHORIZED},
};

#[component]
pub fn DashboardPage() -> impl IntoView {
    let summary = Resource::new(|| (), |_| get_dashboard());
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                summary
                    .get()
                    .map(|result| match result {
                        Ok(s) => view! { <Dashboard summary=s /> }.into_any(),
                        Err(e) if error_text(&e) == UNAUTHORIZED => {
                            view! { <Redirect path="/admin-next/login" /> }.into_any()
                        }
                        Err(e) => {
                            view! { <p id="dashboard-error" class="text-red-600">{error_text(&e)}</p> }
                                .into_any()
                        }
                    })
            }}
        </Suspense>
    }
}

#[component]
fn Dashboard(summary: DashboardSummary) -> impl IntoView {
    let logout = ServerAction::<AdminLogout>::new();
    let t = summary.today;
    view! {
        <div class="mb-6 flex items-center justify-between">
            <h1 class="text-2xl font-semibold">"Dashboard"</h1>
            <div class="flex items-center gap-3 text-sm">
                <span id="signed-in-as">"Signed in as " {summary.username.clone()}</span>
                <ActionForm action=logout>
                    <button id="logout" type="submit" class="rounded-md border border-slate-300 px-3 py-1 dark:border-slate-700">
                        "Sign out"
                    </button>
                </ActionForm>
            </div>
        </div>
        <div class="grid grid-cols-1 gap-4 sm:grid-cols-2 lg:grid-cols-4">
            <Card id="card-keys" title="API keys" value=summary.total_keys.to_string()
                detail=format!("{} active", summary.active_keys) />
            <Card id="card-accounts" title="Accounts" value=summary.total_accounts.to_string()
                detail=format!("{} schedulable", summary.schedulable_accounts) />
            <Card id="card-requests" title="Requests today" value=t.requests.to_string()
                detail=format!("{} tokens", t.all_tokens()) />
            <Card id="card-cost" title="Cost today" value=format_usd(t.cost_nanos)
                detail=format!("store: {}", summary.store_engine) />
        </div>
        <div class="mt-6 rounded-xl border border-slate-200 bg-white p-4 dark:border-slate-800 dark:bg-slate-900">
            <h2 class="mb-2 font-semibold">"Tokens today"</h2>
            <dl class="grid grid-cols-2 gap-2 text-sm sm:grid-cols-4">
                <div><dt class="text-slate-500">"Input"</dt><dd id="tok-input">{t.input_tokens}</dd></div>
                <div><dt class="text-slate-500">"Output"</dt><dd id="tok-output">{t.output_tokens}</dd></div>
                <div><dt class="text-slate-500">"Cache write"</dt><dd id="tok-cache-write">{t.cache_create_tokens()}</dd></div>
                <div><dt class="text-slate-500">"Cache read"</dt><dd id="tok-cache-read">{t.cache_read_tokens}</dd></div>
            </dl>
        </div>
    }
}

#[component]
fn Card(id: &'static str, title: &'static str, value: String, detail: String) -> impl IntoView {
    view! {
        <div id=id class="rounded-xl border border-slate-200 bg-white p-4 shadow-sm dark:border-slate-800 dark:bg-slate-900">
            <div class="text-sm text-slate-500 dark:text-slate-400">{title}</div>
            <div class="mt-1 text-2xl font-semibold">{value}</div>
            <div class="mt-1 text-xs text-slate-500 dark:text-slate-400">{detail}</div>
        </div>
    }
}
