//! The request log: every key's newest requests, filtered by time, key, account, model and
//! status on the server (a GET form, so links and reloads keep the filter), with the totals of
//! what matches and a CSV export of the same selection.

use leptos::prelude::*;
use leptos_router::{components::Form, hooks::use_query_map};

use super::{load_error, BUTTON, BUTTON_SMALL, CARD, INPUT, TABLE_BOX, TD, TH};
use crate::{
    domain::{format_usd, RecordPage, RecordQuery},
    server_fns::get_records,
};

const FIELDS: [(&str, &str, &str); 6] = [
    ("since", "From", "YYYY-MM-DD"),
    ("until", "To", "YYYY-MM-DD"),
    ("key", "Key (id or name)", "any"),
    ("account", "Account (id or name)", "any"),
    ("model", "Model (prefix*)", "any"),
    ("status", "Status (200, 4xx…)", "any"),
];

#[component]
pub fn RequestsPage() -> impl IntoView {
    let params = use_query_map();
    let query = move || {
        params.with(|p| RecordQuery {
            since: p.get("since").unwrap_or_default(),
            until: p.get("until").unwrap_or_default(),
            key: p.get("key").unwrap_or_default(),
            account: p.get("account").unwrap_or_default(),
            model: p.get("model").unwrap_or_default(),
            status: p.get("status").unwrap_or_default(),
            page: p.get("page").and_then(|v| v.parse().ok()).unwrap_or(1),
        })
    };
    let records = Resource::new(query, get_records);
    let value = move |k: &str| params.with_untracked(|p| p.get(k).unwrap_or_default());
    view! {
        <h1 class="mb-4 text-2xl font-semibold">"Requests"</h1>
        <Form method="GET" action="" attr:id="record-filters" attr:class=format!("{CARD} mb-4 grid grid-cols-2 items-end gap-3 sm:grid-cols-4 lg:grid-cols-7")>
            {FIELDS.iter().map(|(name, label, hint)| view! {
                <label class="block text-sm"><span class="text-slate-600 dark:text-slate-300">{*label}</span>
                    <input id=format!("filter-{name}") name=*name value=value(name) placeholder=*hint class=INPUT />
                </label>
            }).collect_view()}
            <button id="record-filter-submit" type="submit" class=BUTTON>"Filter"</button>
        </Form>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || records.get().map(|r| match r {
                Ok(page) => view! { <RecordTable page query=query() /> }.into_any(),
                Err(e) => load_error(&e),
            })}
        </Suspense>
    }
}

fn href(q: &RecordQuery, base: &str, page: Option<u32>) -> String {
    let mut parts: Vec<String> = page.map(|p| vec![format!("page={p}")]).unwrap_or_default();
    for (k, v) in [
        ("since", &q.since),
        ("until", &q.until),
        ("key", &q.key),
        ("account", &q.account),
        ("model", &q.model),
        ("status", &q.status),
    ] {
        if !v.is_empty() {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            parts.push(format!("{k}={enc}"));
        }
    }
    format!("{base}?{}", parts.join("&"))
}

#[component]
fn RecordTable(page: RecordPage, query: RecordQuery) -> impl IntoView {
    let t = page.total;
    let (p, pages) = (page.page, page.pages);
    let prev = (p > 1).then(|| href(&query, "", Some(p - 1)));
    let next = (p < pages).then(|| href(&query, "", Some(p + 1)));
    view! {
        <div class="mb-3 flex flex-wrap items-center justify-between gap-2 text-sm">
            <span id="record-summary">
                {format!("{} requests · {} tokens · {}", page.matching, t.all_tokens(), format_usd(t.cost_nanos))}
            </span>
            <a id="record-csv" href=href(&query, "/admin/request-records.csv", None) class=BUTTON_SMALL rel="external" download="request-records.csv">"Export CSV"</a>
        </div>
        <div class=TABLE_BOX>
            <table id="records-table" class="w-full text-sm">
                <thead><tr>
                    <th class=TH>"Time"</th><th class=TH>"Key"</th><th class=TH>"Account"</th><th class=TH>"Model"</th>
                    <th class=TH>"Status"</th><th class=TH>"Tokens in / out"</th><th class=TH>"Cost"</th><th class=TH>"Duration"</th>
                </tr></thead>
                <tbody>
                    {page.rows.into_iter().map(|row| {
                        let r = row.record;
                        view! {
                            <tr class="record-row">
                                <td class=format!("{TD} whitespace-nowrap text-xs")>{r.timestamp.clone()}</td>
                                <td class=TD>{if row.key_name.is_empty() { r.key_id.clone() } else { row.key_name.clone() }}</td>
                                <td class=TD>{if row.account_name.is_empty() { r.account_id.clone() } else { row.account_name.clone() }}</td>
                                <td class=format!("{TD} font-mono text-xs") title=r.body_preview.clone().unwrap_or_default()>{r.model.clone()}{r.stream.then_some(" · stream")}</td>
                                <td class=TD>{r.status}</td>
                                <td class=TD>
                                    {format!("{} / {}", r.usage.input_tokens, r.usage.output_tokens)}
                                    {r.usage_estimated.then(|| view! { <span class="ml-1 text-xs text-amber-600 dark:text-amber-400" title="the stream was cut: output billed by the documented estimate">"est."</span> })}
                                    {r.output_limit_lowered_to.map(|n| view! { <span class="record-lowered ml-1 text-xs text-amber-600 dark:text-amber-400" title="output limit lowered to fit a cost limit">{format!("max {n}")}</span> })}
                                </td>
                                <td class=TD>{format_usd(r.cost_nanos)}</td>
                                <td class=TD>{format!("{} ms", r.duration_ms)}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
        <div class="mt-3 flex items-center justify-between text-sm">
            <span>{format!("page {p} of {pages}")}</span>
            <span class="flex gap-2">
                {prev.map(|h| view! { <a href=h class=BUTTON_SMALL>"← Previous"</a> })}
                {next.map(|h| view! { <a href=h class=BUTTON_SMALL>"Next →"</a> })}
            </span>
        </div>
    }
}
