//! Accounts: every upstream account with its platform, state (and why it is not schedulable),
//! priority and last use.

use leptos::prelude::*;
use leptos_router::components::Redirect;

use super::{error_text, TD, TH};
use crate::server_fns::{get_accounts, AccountAction, UNAUTHORIZED};

#[component]
pub fn AccountsPage() -> impl IntoView {
    let act = ServerAction::<AccountAction>::new();
    let accounts = Resource::new(move || act.version().get(), |_| get_accounts());
    view! {
        <h1 class="mb-4 text-2xl font-semibold">"Accounts"</h1>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || accounts.get().map(|r| match r {
                Ok(rows) => view! {
                    <div class="overflow-x-auto rounded-xl border border-slate-200 bg-white dark:border-slate-800 dark:bg-slate-900">
                        <table id="accounts-table" class="w-full text-sm">
                            <thead><tr>
                                <th class=TH>"Name"</th><th class=TH>"Platform"</th><th class=TH>"State"</th>
                                <th class=TH>"Priority"</th><th class=TH>"Resting until"</th><th class=TH>"Last used"</th><th class=TH></th>
                            </tr></thead>
                            <tbody>
                                {rows.into_iter().map(|a| {
                                    let badge = match a.state.as_str() {
                                        "normal" => "bg-emerald-100 text-emerald-800 dark:bg-emerald-950 dark:text-emerald-300",
                                        "paused" => "bg-slate-200 text-slate-700 dark:bg-slate-800 dark:text-slate-300",
                                        _ => "bg-amber-100 text-amber-800 dark:bg-amber-950 dark:text-amber-300",
                                    };
                                    view! {
                                        <tr class="account-row">
                                            <td class=TD>{a.name.clone()}</td>
                                            <td class=TD>{a.platform.clone()}</td>
                                            <td class=TD><span class=format!("account-state rounded-full px-2 py-0.5 text-xs {badge}")>{a.state.clone()}</span></td>
                                            <td class=TD>{a.priority}</td>
                                            <td class=format!("{TD} text-xs")>{a.resting_until.clone().unwrap_or_default()}</td>
                                            <td class=format!("{TD} text-xs")>{a.last_used_at.clone().unwrap_or_else(|| "never".into())}</td>
                                            <td class=format!("{TD} whitespace-nowrap")>
                                                <ActionButton act id=a.id.clone() action="toggle-schedulable"
                                                    label=if a.state == "paused" { "Resume" } else { "Pause" } />
                                                <ActionButton act id=a.id.clone() action="reset-status" label="Reset" />
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any(),
                Err(e) if error_text(&e) == UNAUTHORIZED => view! { <Redirect path="/admin-next/login" /> }.into_any(),
                Err(e) => view! { <p class="text-red-600">{error_text(&e)}</p> }.into_any(),
            })}
        </Suspense>
    }
}

/// A one-button form: works hydrated (no reload) and without WASM (a plain POST).
#[component]
fn ActionButton(
    act: ServerAction<AccountAction>,
    id: String,
    action: &'static str,
    label: &'static str,
) -> impl IntoView {
    view! {
        <ActionForm action=act attr:class="inline">
            <input type="hidden" name="id" value=id />
            <input type="hidden" name="action" value=action />
            <button type="submit" data-action=action class="mr-2 rounded-md border border-slate-300 px-2 py-0.5 text-xs hover:bg-slate-100 dark:border-slate-700 dark:hover:bg-slate-800">
                {label}
            </button>
        </ActionForm>
    }
}
