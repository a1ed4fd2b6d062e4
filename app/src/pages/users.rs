//! Local users: create (username, password, role), enable/disable (their keys stop and start
//! working with them), promote or demote, and a daily and monthly budget across all their keys.

use leptos::prelude::*;

use super::{load_error, Field, BUTTON, BUTTON_SMALL, CARD, INPUT, TABLE_BOX, TD, TH};
use crate::{
    domain::{format_usd, UserRole, UserRow},
    server_fns::{error_text_of, get_users, CreateUser, SetUserBudget, UserAction},
};

#[component]
pub fn UsersPage() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let act = ServerAction::<UserAction>::new();
    let budget = ServerAction::<SetUserBudget>::new();
    let users = Resource::new(
        move || {
            (
                create.version().get(),
                act.version().get(),
                budget.version().get(),
            )
        },
        |_| get_users(),
    );
    let error = Signal::derive(move || {
        create
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| error_text_of(&e))
    });
    let act_error = move || {
        act.value()
            .get()
            .and_then(|r| r.err())
            .map(|e| error_text_of(&e))
    };
    let budget_error = move || {
        budget
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| error_text_of(&e))
    };
    view! {
        <h1 class="mb-4 text-2xl font-semibold">"Users"</h1>
        <section class=format!("{CARD} mb-4")>
            <h2 class="mb-2 font-semibold">"Add a user"</h2>
            <ActionForm action=create attr:id="create-user-form" attr:class="grid grid-cols-1 items-end gap-3 sm:grid-cols-4">
                <Field label="Username" name="username" api_name="username" error />
                <Field label="Password (8+ characters)" name="password" api_name="password" kind="password" error />
                <label class="block text-sm"><span class="text-slate-600 dark:text-slate-300">"Role"</span>
                    <select name="role" class=INPUT>
                        <option value="user">"User (own keys)"</option>
                        <option value="admin">"Administrator"</option>
                    </select>
                </label>
                <button id="create-user" type="submit" class=BUTTON>"Add user"</button>
            </ActionForm>
            {move || error.get().map(|m| view! { <p id="create-user-error" role="alert" class="mt-2 text-sm text-red-600">{m}</p> })}
        </section>
        {move || act_error().map(|m| view! { <p role="alert" class="mb-2 text-sm text-red-600">{m}</p> })}
        {move || budget_error().map(|m| view! { <p id="user-budget-error" role="alert" class="mb-2 text-sm text-red-600">{m}</p> })}
        <p class="mb-2 text-xs text-slate-500">"A budget (USD, empty = none) holds across all of a user's keys, deleted ones included; a request that could pass it is refused."</p>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || users.get().map(|r| match r {
                Ok(rows) => view! { <UserTable rows act budget /> }.into_any(),
                Err(e) => load_error(&e),
            })}
        </Suspense>
    }
}

#[component]
fn UserTable(
    rows: Vec<UserRow>,
    act: ServerAction<UserAction>,
    budget: ServerAction<SetUserBudget>,
) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="text-sm text-slate-500">"No local users yet."</p> }.into_any();
    }
    view! {
        <div class=TABLE_BOX>
            <table id="users-table" class="w-full text-sm">
                <thead><tr>
                    <th class=TH>"User"</th><th class=TH>"Role"</th><th class=TH>"Status"</th><th class=TH>"Keys"</th>
                    <th class=TH>"Usage"</th><th class=TH>"Budget per day / month ($)"</th><th class=TH>"Last sign-in"</th><th class=TH></th>
                </tr></thead>
                <tbody>
                    {rows.into_iter().map(|r| {
                        let u = r.user;
                        view! {
                            <tr class="user-row" data-username=u.username.clone()>
                                <td class=TD>{u.username.clone()}</td>
                                <td class=TD>{u.role.as_str()}</td>
                                <td class=TD><span class="user-status">{if u.is_active { "enabled" } else { "disabled" }}</span></td>
                                <td class=TD>
                                    {r.key_count}
                                    {(r.deleted_key_count > 0).then(|| view! { <span class="text-xs text-slate-500">{format!(" (+{} deleted)", r.deleted_key_count)}</span> })}
                                </td>
                                <td class=format!("{TD} text-xs")>{format!("{} req · {}", r.total.requests, format_usd(r.total.cost_nanos))}</td>
                                <td class=TD><BudgetForm budget id=u.id.clone() daily=u.budget.daily_cost monthly=u.budget.monthly_cost /></td>
                                <td class=format!("{TD} text-xs")>{u.last_login_at.clone().unwrap_or_else(|| "never".into())}</td>
                                <td class=format!("{TD} whitespace-nowrap")>
                                    <UserButton act id=u.id.clone() action=if u.is_active { "disable" } else { "enable" }
                                        label=if u.is_active { "Disable" } else { "Enable" } />
                                    <UserButton act id=u.id.clone() action=if u.role == UserRole::Admin { "make-user" } else { "make-admin" }
                                        label=if u.role == UserRole::Admin { "Make user" } else { "Make admin" } />
                                </td>
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
fn UserButton(
    act: ServerAction<UserAction>,
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

/// A user's daily and monthly budget, saved for all their keys.
#[component]
fn BudgetForm(
    budget: ServerAction<SetUserBudget>,
    id: String,
    daily: f64,
    monthly: f64,
) -> impl IntoView {
    let shown = |v: f64| {
        if v > 0.0 {
            v.to_string()
        } else {
            String::new()
        }
    };
    let small = INPUT.replace("w-full", "w-20").replace("px-3", "px-2");
    view! {
        <ActionForm action=budget attr:class="user-budget flex items-end gap-1">
            <input type="hidden" name="id" value=id />
            <input name="daily_cost" value=shown(daily) placeholder="none" aria-label="Daily budget in USD" class=small.clone() />
            <input name="monthly_cost" value=shown(monthly) placeholder="none" aria-label="Monthly budget in USD" class=small />
            <button type="submit" data-action="budget" class=BUTTON_SMALL>"Save"</button>
        </ActionForm>
    }
}
