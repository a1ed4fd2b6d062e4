//! Accounts: every upstream account with its platform, state and why it is not schedulable,
//! priority, today's usage, last use and rest end; pause/resume, reset, edit, delete; and the
//! account groups keys can be bound to.

use leptos::prelude::*;

use super::{load_error, Field, BUTTON, BUTTON_SMALL, CARD, TABLE_BOX, TD, TH};
use crate::{
    domain::{format_usd, AccountGroup},
    server_fns::{
        error_text_of, get_accounts, get_groups, AccountAction, CreateGroup, DeleteGroup,
    },
};

#[component]
pub fn AccountsPage() -> impl IntoView {
    let act = ServerAction::<AccountAction>::new();
    let accounts = Resource::new(move || act.version().get(), |_| get_accounts());
    view! {
        <div class="mb-4 flex flex-wrap items-center justify-between gap-2">
            <h1 class="text-2xl font-semibold">"Accounts"</h1>
            <a id="add-account" href="/admin-next/accounts/new" class=BUTTON>"Add account"</a>
        </div>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || accounts.get().map(|r| match r {
                Ok(rows) => view! {
                    <div class=TABLE_BOX>
                        <table id="accounts-table" class="w-full text-sm">
                            <thead><tr>
                                <th class=TH>"Name"</th><th class=TH>"Platform"</th><th class=TH>"State"</th>
                                <th class=TH>"Priority"</th><th class=TH>"Today"</th><th class=TH>"Resting until"</th><th class=TH>"Last used"</th><th class=TH></th>
                            </tr></thead>
                            <tbody>
                                {rows.into_iter().map(|a| {
                                    let badge = match a.state.as_str() {
                                        "normal" => "bg-emerald-100 text-emerald-800 dark:bg-emerald-950 dark:text-emerald-300",
                                        "paused" => "bg-slate-200 text-slate-700 dark:bg-slate-800 dark:text-slate-300",
                                        "blocked" | "error" => "bg-red-100 text-red-800 dark:bg-red-950 dark:text-red-300",
                                        _ => "bg-amber-100 text-amber-800 dark:bg-amber-950 dark:text-amber-300",
                                    };
                                    let id = a.id.clone();
                                    view! {
                                        <tr class="account-row" data-account-id=a.id.clone()>
                                            <td class=TD><a href=format!("/admin-next/accounts/{id}") class="font-medium hover:underline">{a.name.clone()}</a></td>
                                            <td class=TD>{a.platform.clone()}</td>
                                            <td class=TD>
                                                <span class=format!("account-state rounded-full px-2 py-0.5 text-xs {badge}")>{a.state.clone()}</span>
                                                {(!a.reason.is_empty()).then(|| view! { <div class="account-reason mt-1 text-xs text-slate-500">{a.reason.clone()}</div> })}
                                            </td>
                                            <td class=TD>{a.priority}</td>
                                            <td class=format!("{TD} text-xs")>{format!("{} req · {}", a.today.requests, format_usd(a.today.cost_nanos))}</td>
                                            <td class=format!("{TD} text-xs")>{a.resting_until.clone().unwrap_or_default()}</td>
                                            <td class=format!("{TD} text-xs")>{a.last_used_at.clone().unwrap_or_else(|| "never".into())}</td>
                                            <td class=format!("{TD} whitespace-nowrap")>
                                                <ActionButton act id=a.id.clone() action="toggle-schedulable"
                                                    label=if a.schedulable { "Pause" } else { "Resume" } />
                                                <ActionButton act id=a.id.clone() action="reset-status" label="Reset" />
                                                <a href=format!("/admin-next/accounts/{}", a.id) class=BUTTON_SMALL>"Edit"</a>
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any(),
                Err(e) => load_error(&e),
            })}
        </Suspense>
        <Groups />
    }
}

/// A one-button form: works hydrated (no reload) and without WASM (a plain POST).
#[component]
pub fn ActionButton(
    act: ServerAction<AccountAction>,
    id: String,
    action: &'static str,
    label: &'static str,
) -> impl IntoView {
    view! {
        <ActionForm action=act attr:class="inline">
            <input type="hidden" name="id" value=id />
            <input type="hidden" name="action" value=action />
            <button type="submit" data-action=action class=BUTTON_SMALL>{label}</button>
        </ActionForm>
    }
}

#[component]
fn Groups() -> impl IntoView {
    let create = ServerAction::<CreateGroup>::new();
    let delete = ServerAction::<DeleteGroup>::new();
    let groups = Resource::new(
        move || (create.version().get(), delete.version().get()),
        |_| get_groups(),
    );
    let error = Signal::derive(move || {
        create
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| error_text_of(&e))
    });
    view! {
        <section class=format!("{CARD} mt-6")>
            <h2 class="mb-1 font-semibold">"Account groups"</h2>
            <p class="mb-3 text-sm text-slate-500 dark:text-slate-400">
                "Bind a key to " <code>"group:<id>"</code> " to have it served by the group's accounts only. Members are chosen on each account's page."
            </p>
            <ActionForm action=create attr:class="mb-3 flex flex-wrap items-end gap-2">
                <div class="w-64"><Field label="New group name" name="name" api_name="name" error /></div>
                <input type="hidden" name="platform" value="claude" />
                <button id="create-group" type="submit" class=BUTTON>"Create group"</button>
            </ActionForm>
            {move || error.get().map(|m| view! { <p role="alert" class="mb-2 text-sm text-red-600">{m}</p> })}
            <Suspense fallback=|| ()>
                {move || groups.get().map(|r| match r {
                    Ok(list) => view! { <GroupList list delete /> }.into_any(),
                    Err(e) => load_error(&e),
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn GroupList(list: Vec<AccountGroup>, delete: ServerAction<DeleteGroup>) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="text-sm text-slate-500">"No groups yet."</p> }.into_any();
    }
    view! {
        <ul id="group-list" class="divide-y divide-slate-200 text-sm dark:divide-slate-800">
            {list.into_iter().map(|g| view! {
                <li class="group-row flex flex-wrap items-center justify-between gap-2 py-2">
                    <span><span class="font-medium">{g.name.clone()}</span>
                        <code class="ml-2 text-xs text-slate-500">{format!("group:{}", g.id)}</code></span>
                    <span class="flex items-center gap-2">
                        <span class="text-xs text-slate-500">{format!("{} accounts", g.members.len())}</span>
                        <ActionForm action=delete attr:class="inline">
                            <input type="hidden" name="id" value=g.id.clone() />
                            <button type="submit" class=BUTTON_SMALL>"Delete"</button>
                        </ActionForm>
                    </span>
                </li>
            }).collect_view()}
        </ul>
    }
    .into_any()
}
