//! API keys: the table with usage and limit progress, and a form that creates a key and shows
//! it once.

use leptos::prelude::*;
use leptos_router::components::Redirect;

use super::{error_text, TD, TH};
use crate::{
    domain::{format_usd, KeyRow},
    server_fns::{get_keys, CreateApiKey, KeyAction, UNAUTHORIZED},
};

#[component]
pub fn KeysPage() -> impl IntoView {
    let create = ServerAction::<CreateApiKey>::new();
    let act = ServerAction::<KeyAction>::new();
    let keys = Resource::new(
        move || (create.version().get(), act.version().get()),
        |_| get_keys(),
    );
    let input = "rounded-md border border-slate-300 bg-white px-3 py-2 dark:border-slate-700 dark:bg-slate-800";
    view! {
        <h1 class="mb-4 text-2xl font-semibold">"API keys"</h1>
        <ActionForm action=create>
            <div class="mb-4 flex flex-wrap items-end gap-2">
                <label class="text-sm">"Name" <br />
                    <input id="new-key-name" name="name" required class=input />
                </label>
                <label class="text-sm">"Daily cost limit ($, empty = none)" <br />
                    <input id="new-key-daily" name="daily_cost_limit" inputmode="decimal" class=input />
                </label>
                <button id="new-key-submit" type="submit" class="whitespace-nowrap rounded-md bg-indigo-600 px-4 py-2 font-medium text-white hover:bg-indigo-500">
                    "Create key"
                </button>
            </div>
        </ActionForm>
        {move || create.value().get().map(|r| match r {
            Ok(key) => view! {
                <div class="mb-4 rounded-xl border border-emerald-300 bg-emerald-50 p-3 dark:border-emerald-800 dark:bg-emerald-950">
                    <div class="text-sm">"The new key, shown only this once:"</div>
                    <code id="new-key-value" class="break-all font-mono text-sm">{key.clone()}</code>
                    <pre class="mt-2 overflow-x-auto text-xs">{format!("export ANTHROPIC_BASE_URL=<this relay>\\nexport ANTHROPIC_API_KEY={key}")}</pre>
                </div>
            }.into_any(),
            Err(e) => view! { <p id="new-key-error" role="alert" class="mb-4 text-red-600">{error_text(&e)}</p> }.into_any(),
        })}
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || keys.get().map(|r| match r {
                Ok(rows) => view! { <KeyTable rows act /> }.into_any(),
                Err(e) if error_text(&e) == UNAUTHORIZED => view! { <Redirect path="/admin-next/login" /> }.into_any(),
                Err(e) => view! { <p class="text-red-600">{error_text(&e)}</p> }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn KeyTable(rows: Vec<KeyRow>, act: ServerAction<KeyAction>) -> impl IntoView {
    view! {
        <div class="overflow-x-auto rounded-xl border border-slate-200 bg-white dark:border-slate-800 dark:bg-slate-900">
            <table id="keys-table" class="w-full text-sm">
                <thead><tr>
                    <th class=TH>"Name"</th><th class=TH>"Key"</th><th class=TH>"Status"</th>
                    <th class=TH>"Requests"</th><th class=TH>"Cost"</th><th class=TH>"Limits"</th><th class=TH>"Last used"</th><th class=TH></th>
                </tr></thead>
                <tbody>
                    {rows.into_iter().map(|k| view! {
                        <tr class="key-row">
                            <td class=TD>{k.name.clone()}</td>
                            <td class=format!("{TD} font-mono text-xs")>{k.key_preview.clone()}</td>
                            <td class=TD>{if k.is_active { "active" } else { "disabled" }}</td>
                            <td class=TD>{k.total.requests}</td>
                            <td class=TD>{format_usd(k.total.cost_nanos)}</td>
                            <td class=TD>
                                {k.limits.into_iter().map(|b| view! {
                                    <div class="key-limit mb-1 w-40" title=b.label.clone()>
                                        <div class="text-xs">{b.label.clone()}</div>
                                        <div class="h-1.5 rounded bg-slate-200 dark:bg-slate-800">
                                            <div class="h-1.5 rounded bg-indigo-500" style=format!("width: {:.1}%", b.percent())></div>
                                        </div>
                                    </div>
                                }).collect_view()}
                            </td>
                            <td class=format!("{TD} text-xs")>{k.last_used_at.clone().unwrap_or_else(|| "never".into())}</td>
                            <td class=format!("{TD} whitespace-nowrap")>
                                <KeyButton act id=k.id.clone() action=if k.is_active { "disable" } else { "enable" }
                                    label=if k.is_active { "Disable" } else { "Enable" } />
                                <KeyButton act id=k.id.clone() action="delete" label="Delete" />
                            </td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn KeyButton(
    act: ServerAction<KeyAction>,
    id: String,
    action: &'static str,
    label: &'static str,
) -> impl IntoView {
    let class = "mr-2 rounded-md border border-slate-300 px-2 py-0.5 text-xs hover:bg-slate-100 dark:border-slate-700 dark:hover:bg-slate-800";
    if action == "delete" {
        // Deleting asks first, which needs the hydrated page.
        let on_click = move |_| {
            if window()
                .confirm_with_message("Delete this key? It stops working at once.")
                .unwrap_or(false)
            {
                act.dispatch(KeyAction {
                    id: id.clone(),
                    action: action.to_string(),
                });
            }
        };
        return view! { <button type="button" data-action=action class=class on:click=on_click>{label}</button> }.into_any();
    }
    view! {
        <ActionForm action=act attr:class="inline">
            <input type="hidden" name="id" value=id />
            <input type="hidden" name="action" value=action />
            <button type="submit" data-action=action class=class>{label}</button>
        </ActionForm>
    }
    .into_any()
}
