//! API keys: a searchable, filterable, sortable table paginated on the server, with usage and
//! per-key limit progress; single and batch creation (keys shown once, with client set-up
//! snippets); enable, disable, soft delete, restore and permanent delete. Local users get the
//! same page for their own keys (`/admin-next/my-keys`), without the admin's fields: their keys
//! get the admin's defaults, and a key an admin disabled stays disabled for them.

use leptos::prelude::*;
use leptos_router::{components::Form, hooks::use_query_map};

use super::{
    key_edit::KeyFields, load_error, CopyButton, Field, BUTTON, BUTTON_SMALL, INPUT, TABLE_BOX, TD,
    TH,
};
use crate::{
    domain::{format_usd, KeyForm, KeyPage, KeyQuery, KeyRow},
    server_fns::{error_text_of, get_keys, CreateKeys, KeyAction},
};

#[component]
pub fn KeysPage() -> impl IntoView {
    view! { <Keys own=false /> }
}

#[component]
pub fn MyKeysPage() -> impl IntoView {
    view! { <Keys own=true /> }
}

#[component]
fn Keys(own: bool) -> impl IntoView {
    let create = ServerAction::<CreateKeys>::new();
    let act = ServerAction::<KeyAction>::new();
    let params = use_query_map();
    let query = move || {
        params.with(|p| KeyQuery {
            search: p.get("search").unwrap_or_default(),
            tag: p.get("tag").unwrap_or_default(),
            state: p.get("state").unwrap_or_default(),
            sort: p.get("sort").unwrap_or_default(),
            page: p.get("page").and_then(|v| v.parse().ok()).unwrap_or(1),
        })
    };
    let keys = Resource::new(
        move || (query(), create.version().get(), act.version().get()),
        |(q, _, _)| get_keys(q),
    );
    let error = Signal::derive(move || {
        create
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| error_text_of(&e))
    });
    view! {
        <h1 class="mb-4 text-2xl font-semibold">{if own { "My API keys" } else { "API keys" }}</h1>
        <details class="mb-4 rounded-xl border border-slate-200 bg-white p-4 dark:border-slate-800 dark:bg-slate-900" open=true>
            <summary class="cursor-pointer font-medium">"Create a key"</summary>
            <ActionForm action=create attr:class="mt-3" attr:id="create-key-form">
                <div class="grid grid-cols-1 gap-3 sm:grid-cols-3">
                    <Field label="Name" name="form[name]" api_name="name" error />
                    {(!own).then(|| view! {
                        <Field label="How many (batch)" name="form[count]" api_name="count" placeholder="1" error />
                        <Field label="Daily cost limit ($)" name="form[daily_cost_limit]" api_name="dailyCostLimit" placeholder="none" error />
                    })}
                </div>
                {(!own).then(|| view! {
                    <details class="mt-3">
                        <summary class="cursor-pointer text-sm text-slate-600 dark:text-slate-300">"Limits, permissions, bindings, expiry"</summary>
                        <div class="mt-3"><KeyFields form=KeyForm::default() error skip_basic=true /></div>
                    </details>
                })}
                <button id="new-key-submit" type="submit" class=format!("{BUTTON} mt-3")>"Create"</button>
            </ActionForm>
            {move || error.get().filter(|m| !m.contains(':') || m.starts_with("name:")).map(|m| view! {
                <p id="new-key-error" role="alert" class="mt-2 text-sm text-red-600 dark:text-red-400">{m}</p>
            })}
        </details>
        {move || create.value().get().and_then(|r| r.ok()).map(|created| view! { <CreatedKeys created /> })}
        <Filters own />
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || keys.get().map(|r| match r {
                Ok(page) => view! { <KeyTable page act own query=query() /> }.into_any(),
                Err(e) => load_error(&e),
            })}
        </Suspense>
    }
}

/// The new keys, shown this once, with set-up snippets for the usual clients.
#[component]
fn CreatedKeys(created: Vec<String>) -> impl IntoView {
    let origin = window().location().origin().unwrap_or_default();
    let first = created.first().cloned().unwrap_or_default();
    let claude =
        format!("export ANTHROPIC_BASE_URL={origin}/api\nexport ANTHROPIC_API_KEY={first}\nclaude");
    let codex = format!(
        "# ~/.codex/config.toml\nmodel_provider = \"crs\"\n[model_providers.crs]\nname = \"crs\"\nbase_url = \"{origin}/openai\"\nwire_api = \"responses\"\nenv_key = \"CRS_API_KEY\"\n\nexport CRS_API_KEY={first}"
    );
    let gemini = format!(
        "export GOOGLE_GEMINI_BASE_URL={origin}/gemini\nexport GEMINI_API_KEY={first}\ngemini"
    );
    view! {
        <div id="new-keys" class="mb-4 rounded-xl border border-emerald-300 bg-emerald-50 p-4 dark:border-emerald-800 dark:bg-emerald-950">
            <p class="text-sm font-medium">
                {if created.len() == 1 { "The new key, shown only this once:".to_string() } else { format!("{} new keys, shown only this once:", created.len()) }}
            </p>
            <ul class="mt-2 space-y-1">
                {created.iter().map(|k| view! {
                    <li class="flex flex-wrap items-center gap-2">
                        <code class="new-key-value break-all font-mono text-sm">{k.clone()}</code>
                        <CopyButton text=k.clone() />
                    </li>
                }).collect_view()}
            </ul>
            <div class="mt-3 grid grid-cols-1 gap-3 lg:grid-cols-3">
                <Snippet title="Claude Code" text=claude />
                <Snippet title="Codex CLI" text=codex />
                <Snippet title="Gemini CLI" text=gemini />
            </div>
        </div>
    }
}

#[component]
fn Snippet(title: &'static str, text: String) -> impl IntoView {
    view! {
        <div class="min-w-0">
            <div class="mb-1 flex items-center justify-between text-xs font-medium">
                {title} <CopyButton text=text.clone() />
            </div>
            <pre class="overflow-x-auto rounded-md bg-slate-900 p-2 text-xs text-slate-100">{text}</pre>
        </div>
    }
}

/// Search, filters and sort: a plain GET form, so it works before (and without) WASM.
#[component]
fn Filters(own: bool) -> impl IntoView {
    let params = use_query_map();
    let get = move |k: &str| params.with_untracked(|p| p.get(k).unwrap_or_default());
    let select = INPUT.replace("w-full", "");
    view! {
        <Form method="GET" action="" attr:id="key-filters" attr:class="mb-3 flex flex-wrap items-end gap-2">
            <label class="text-sm">"Search"
                <input id="key-search" name="search" value=get("search") placeholder="name, key or tag" class=INPUT />
            </label>
            <label class="text-sm">"State"
                <select id="key-state" name="state" class=select.clone()>
                    {[("", "All"), ("active", "Active"), ("disabled", "Disabled"), ("expired", "Expired"), ("deleted", "Deleted")]
                        .into_iter()
                        .filter(|(v, _)| !own || *v != "deleted")
                        .map(|(v, l)| view! { <option value=v selected=get("state") == v>{l}</option> }).collect_view()}
                </select>
            </label>
            <label class="text-sm">"Tag"
                <input id="key-tag" name="tag" value=get("tag") placeholder="any" class=select.clone() />
            </label>
            <label class="text-sm">"Sort"
                <select id="key-sort" name="sort" class=select>
                    {[("", "Newest"), ("name", "Name"), ("last_used", "Last used"), ("cost", "Cost")]
                        .into_iter()
                        .map(|(v, l)| view! { <option value=v selected=get("sort") == v>{l}</option> }).collect_view()}
                </select>
            </label>
            <button id="key-filter-submit" type="submit" class=BUTTON>"Apply"</button>
        </Form>
    }
}

fn page_href(q: &KeyQuery, page: u32) -> String {
    let mut parts = vec![format!("page={page}")];
    for (k, v) in [
        ("search", &q.search),
        ("tag", &q.tag),
        ("state", &q.state),
        ("sort", &q.sort),
    ] {
        if !v.is_empty() {
            parts.push(format!("{k}={}", urlencode(v)));
        }
    }
    format!("?{}", parts.join("&"))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[component]
fn KeyTable(
    page: KeyPage,
    act: ServerAction<KeyAction>,
    own: bool,
    query: KeyQuery,
) -> impl IntoView {
    let (p, pages) = (page.page, page.pages);
    let prev = (p > 1).then(|| page_href(&query, p - 1));
    let next = (p < pages).then(|| page_href(&query, p + 1));
    view! {
        <div class=TABLE_BOX>
            <table id="keys-table" class="w-full text-sm">
                <thead><tr>
                    <th class=TH>"Name"</th><th class=TH>"Key"</th><th class=TH>"Status"</th>
                    <th class=TH>"Requests"</th><th class=TH>"Cost"</th><th class=TH>"Limits"</th><th class=TH>"Last used"</th><th class=TH></th>
                </tr></thead>
                <tbody>
                    {page.rows.into_iter().map(|k| view! { <Row k act own /> }).collect_view()}
                </tbody>
            </table>
        </div>
        <div id="key-pagination" class="mt-3 flex items-center justify-between text-sm">
            <span id="key-count">{format!("{} keys · page {p} of {pages}", page.matching)}</span>
            <span class="flex gap-2">
                {prev.map(|h| view! { <a id="key-prev" href=h class=BUTTON_SMALL>"← Previous"</a> })}
                {next.map(|h| view! { <a id="key-next" href=h class=BUTTON_SMALL>"Next →"</a> })}
            </span>
        </div>
    }
}

#[component]
fn Row(k: KeyRow, act: ServerAction<KeyAction>, own: bool) -> impl IntoView {
    let status = if k.is_deleted {
        "deleted"
    } else if k.is_active {
        "active"
    } else {
        "disabled"
    };
    let id = k.id.clone();
    view! {
        <tr class="key-row" data-key-id=k.id.clone()>
            <td class=TD>
                <div class="font-medium">{k.name.clone()}</div>
                <div class="text-xs text-slate-500">
                    {k.tags.join(", ")}
                    {k.owner.clone().map(|o| format!(" · owner {o}"))}
                </div>
            </td>
            <td class=format!("{TD} font-mono text-xs")>{k.key_preview.clone()}</td>
            <td class=TD>
                <span class="key-status">{status}</span>
                {(k.disabled_by_admin && !k.is_deleted).then(|| view! { <div class="key-admin-disabled text-xs text-slate-500">"by an administrator"</div> })}
            </td>
            <td class=TD>{k.total.requests}</td>
            <td class=TD>{format_usd(k.total.cost_nanos)}</td>
            <td class=TD>
                {k.limits.into_iter().map(|b| view! {
                    <div class="key-limit mb-1 w-40" title=b.label.clone()>
                        <div class="flex justify-between text-xs"><span>{b.label.clone()}</span><span>{format!("{:.0}%", b.percent())}</span></div>
                        <div class="h-1.5 rounded bg-slate-200 dark:bg-slate-800">
                            <div class="h-1.5 rounded bg-indigo-500" style=format!("width: {:.1}%", b.percent())></div>
                        </div>
                    </div>
                }).collect_view()}
            </td>
            <td class=format!("{TD} text-xs")>{k.last_used_at.clone().unwrap_or_else(|| "never".into())}</td>
            <td class=format!("{TD} whitespace-nowrap")>
                {(!own && !k.is_deleted).then(|| view! { <a href=format!("/admin-next/keys/{id}") data-action="edit" class=BUTTON_SMALL>"Edit"</a> })}
                {if k.is_deleted {
                    (!own).then(|| view! {
                        <KeyButton act id=k.id.clone() action="restore" label="Restore" />
                        <KeyButton act id=k.id.clone() action="purge" label="Delete permanently" />
                    }).into_any()
                } else {
                    // An owner cannot enable a key an administrator disabled.
                    let locked = own && k.disabled_by_admin;
                    view! {
                        {(!locked).then(|| view! {
                            <KeyButton act id=k.id.clone() action=if k.is_active { "disable" } else { "enable" }
                                label=if k.is_active { "Disable" } else { "Enable" } />
                        })}
                        <KeyButton act id=k.id.clone() action="delete" label="Delete" />
                    }.into_any()
                }}
            </td>
        </tr>
    }
}

#[component]
fn KeyButton(
    act: ServerAction<KeyAction>,
    id: String,
    action: &'static str,
    label: &'static str,
) -> impl IntoView {
    if action == "delete" || action == "purge" {
        // Deleting asks first, which needs the hydrated page.
        let question = if action == "purge" {
            "Remove this key for good? Its usage stays in the totals; its owner gets the slot back."
        } else {
            "Delete this key? It stops working at once."
        };
        let on_click = move |_| {
            if window().confirm_with_message(question).unwrap_or(false) {
                act.dispatch(KeyAction {
                    id: id.clone(),
                    action: action.to_string(),
                });
            }
        };
        return view! { <button type="button" data-action=action class=BUTTON_SMALL on:click=on_click>{label}</button> }.into_any();
    }
    view! {
        <ActionForm action=act attr:class="inline">
            <input type="hidden" name="id" value=id />
            <input type="hidden" name="action" value=action />
            <button type="submit" data-action=action class=BUTTON_SMALL>{label}</button>
        </ActionForm>
    }
    .into_any()
}
