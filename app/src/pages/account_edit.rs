//! Creating and editing an account: one form whose fields follow the platform (chosen with
//! plain links, so it works without WASM), the Claude OAuth steps (PKCE: open the URL, paste
//! the code, create), proxy settings, group, and on an existing account its test button,
//! error history and deletion.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::{
    accounts::ActionButton, load_error, Check, Field, BUTTON, BUTTON_SMALL, CARD, INPUT, TD, TH,
};
use crate::{
    domain::{AccountDetail, AccountForm},
    server_fns::{
        error_text_of, get_account, AccountAction, OauthExchange, OauthStart, SaveAccount,
        TestAccount,
    },
};

const PLATFORMS: [(&str, &str); 6] = [
    ("claude-console", "Claude Console"),
    ("claude-official", "Claude (OAuth)"),
    ("openai-responses", "OpenAI-compatible"),
    ("azure-openai", "Azure OpenAI"),
    ("gemini-api", "Gemini API"),
    ("bedrock", "AWS Bedrock"),
];

#[component]
pub fn AccountEditPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = move || params.with(|p| p.get("id").unwrap_or_default());
    let detail = Resource::new(id, |id| {
        get_account(if id == "new" { String::new() } else { id })
    });
    let chosen = move || query.with(|q| q.get("platform"));
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || detail.get().map(|r| match r {
                Ok(mut d) => {
                    let is_new = d.account.is_none();
                    if let (true, Some(p)) = (is_new, chosen()) {
                        d.form.platform = p;
                    }
                    view! { <AccountEditor detail=d is_new /> }.into_any()
                }
                Err(e) => load_error(&e),
            })}
        </Suspense>
    }
}

#[component]
fn AccountEditor(detail: AccountDetail, is_new: bool) -> impl IntoView {
    let save = ServerAction::<SaveAccount>::new();
    let error = Signal::derive(move || {
        save.value()
            .get()
            .and_then(|r| r.err())
            .map(|e| error_text_of(&e))
    });
    let f = detail.form.clone();
    let platform = f.platform.clone();
    let id = detail
        .account
        .as_ref()
        .map(|a| a.id.clone())
        .unwrap_or_default();
    let (oauth_session, set_oauth_session) = signal(String::new());
    let tools = (!is_new).then(|| view! { <AccountTools id=id.clone() detail=detail.clone() /> });
    let groups = detail.groups.clone();
    view! {
        <h1 class="mb-4 text-2xl font-semibold">
            {if is_new { "Add account".to_string() } else { format!("Account: {}", f.name) }}
        </h1>
        {is_new.then(|| view! {
            <nav id="platform-tabs" class="mb-4 flex flex-wrap gap-2 text-sm">
                {PLATFORMS.iter().map(|(p, label)| {
                    let active = *p == platform;
                    let class = if active { "rounded-md bg-indigo-600 px-3 py-1 text-white" } else { "rounded-md border border-slate-300 px-3 py-1 hover:bg-slate-100 dark:border-slate-700 dark:hover:bg-slate-800" };
                    view! { <a href=format!("?platform={p}") data-platform=*p class=class>{*label}</a> }
                }).collect_view()}
            </nav>
        })}
        {(is_new && platform == "claude-official").then(|| view! { <OAuthSteps set_session=set_oauth_session /> })}
        <ActionForm action=save attr:id="account-form">
            <input type="hidden" name="id" value=id.clone() />
            <input type="hidden" name="form[platform]" value=platform.clone() />
            <input type="hidden" name="form[oauth_session_id]" prop:value=move || oauth_session.get() />
            <PlatformFields f=f.clone() error is_new />
            <fieldset class=format!("{CARD} mb-4")>
                <legend class="px-1 font-semibold">"Scheduling"</legend>
                <div class="grid grid-cols-1 gap-3 sm:grid-cols-3">
                    <Field label="Priority (1 = first)" name="form[priority]" api_name="priority" value=f.priority.clone() error />
                    <Field label="Max concurrent requests (0 = any)" name="form[max_concurrency]" api_name="maxConcurrency" value=f.max_concurrency.clone() error />
                    <label class="block text-sm"><span class="text-slate-600 dark:text-slate-300">"Type"</span>
                        <select name="form[account_type]" class=INPUT>
                            <option value="shared" selected=f.account_type != "dedicated">"Shared (pool)"</option>
                            <option value="dedicated" selected=f.account_type == "dedicated">"Dedicated (bound keys only)"</option>
                        </select>
                    </label>
                    <Field label="Models served (comma-separated, empty = any)" name="form[supported_models]" api_name="supportedModels" value=f.supported_models.clone() error />
                    <label class="block text-sm"><span class="text-slate-600 dark:text-slate-300">"Group"</span>
                        <select name="form[groups]" class=INPUT>
                            <option value="">"None"</option>
                            {groups.iter().map(|g| {
                                let sel = f.groups.split(',').any(|x| x == g.id);
                                view! { <option value=g.id.clone() selected=sel>{g.name.clone()}</option> }
                            }).collect_view()}
                        </select>
                    </label>
                    <div class="pt-6"><Check label="Never cool down automatically" name="form[disable_auto_protection]" checked=f.disable_auto_protection.is_some() /></div>
                </div>
            </fieldset>
            <fieldset class=format!("{CARD} mb-4")>
                <legend class="px-1 font-semibold">"Proxy"</legend>
                <div class="grid grid-cols-2 gap-3 sm:grid-cols-5">
                    <label class="block text-sm"><span class="text-slate-600 dark:text-slate-300">"Type"</span>
                        <select name="form[proxy_type]" class=INPUT>
                            {[("", "None"), ("socks5", "SOCKS5"), ("http", "HTTP"), ("https", "HTTPS")].into_iter().map(|(v, l)| view! {
                                <option value=v selected=f.proxy_type == v>{l}</option>
                            }).collect_view()}
                        </select>
                    </label>
                    <Field label="Host" name="form[proxy_host]" api_name="proxy host" value=f.proxy_host.clone() error />
                    <Field label="Port" name="form[proxy_port]" api_name="proxy port" value=f.proxy_port.clone() error />
                    <Field label="Username" name="form[proxy_username]" value=f.proxy_username.clone() error />
                    <Field label="Password" name="form[proxy_password]" kind="password" placeholder=if is_new { "" } else { "unchanged" } error />
                </div>
            </fieldset>
            <div class="flex items-center gap-3">
                <button id="account-submit" type="submit" class=BUTTON>{if is_new { "Create account" } else { "Save" }}</button>
                <a href="/admin-next/accounts" class="text-sm hover:underline">"Cancel"</a>
            </div>
        </ActionForm>
        {move || error.get().map(|m| view! { <p id="account-error" role="alert" class="mt-3 text-sm text-red-600 dark:text-red-400">{m}</p> })}
        {tools}
    }
}

/// The credentials and endpoint of each platform.
#[component]
fn PlatformFields(f: AccountForm, error: Signal<Option<String>>, is_new: bool) -> impl IntoView {
    let keep = if is_new { "" } else { "unchanged" };
    let p = f.platform.clone();
    view! {
        <fieldset class=format!("{CARD} mb-4")>
            <legend class="px-1 font-semibold">"Account"</legend>
            <div class="grid grid-cols-1 gap-3 sm:grid-cols-2">
                <Field label="Name" name="form[name]" api_name="name" value=f.name.clone() error />
                <Field label="Description" name="form[description]" value=f.description.clone() error />
                {match p.as_str() {
                    "claude-console" | "openai-responses" | "gemini-api" => view! {
                        <Field label="API base URL" name="form[api_url]" api_name="apiUrl" value=f.api_url.clone() error
                            placeholder=match p.as_str() { "claude-console" => "https://api.anthropic.com", "gemini-api" => "https://generativelanguage.googleapis.com", _ => "https://api.openai.com" } />
                        <Field label="API key" name="form[api_key]" api_name="apiKey" kind="password" placeholder=keep error />
                    }.into_any(),
                    "azure-openai" => view! {
                        <Field label="Endpoint (https://<resource>.openai.azure.com)" name="form[api_url]" api_name="apiUrl" value=f.api_url.clone() error />
                        <Field label="API key" name="form[api_key]" api_name="apiKey" kind="password" placeholder=keep error />
                        <Field label="Deployment" name="form[deployment_name]" api_name="deploymentName" value=f.deployment_name.clone() error />
                        <Field label="API version" name="form[api_version]" api_name="apiVersion" value=f.api_version.clone() placeholder="2024-10-21" error />
                    }.into_any(),
                    "bedrock" => view! {
                        <Field label="Region" name="form[region]" api_name="region" value=f.region.clone() placeholder="us-east-1" error />
                        <Field label="Bedrock API key (or AWS keys below)" name="form[bearer_token]" api_name="bearerToken" kind="password" placeholder=keep error />
                        <Field label="AWS access key id" name="form[aws_access_key_id]" api_name="awsCredentials" error />
                        <Field label="AWS secret access key" name="form[aws_secret_access_key]" kind="password" placeholder=keep error />
                    }.into_any(),
                    _ => view! {
                        <Field label="User-Agent override (optional)" name="form[user_agent]" value=f.user_agent.clone() error />
                    }.into_any(),
                }}
            </div>
        </fieldset>
    }
}

/// Claude OAuth: 1. get the authorization URL, 2. paste the code; the tokens stay on the
/// server and the account form then uses the session.
#[component]
fn OAuthSteps(set_session: WriteSignal<String>) -> impl IntoView {
    let start = ServerAction::<OauthStart>::new();
    let exchange = ServerAction::<OauthExchange>::new();
    Effect::new(move |_| {
        if let Some(Ok(sid)) = exchange.value().get() {
            set_session.set(sid);
        }
    });
    let started = move || start.value().get().and_then(|r| r.ok());
    view! {
        <section id="oauth-steps" class=format!("{CARD} mb-4")>
            <h2 class="mb-2 font-semibold">"Authorize with Claude"</h2>
            <ol class="list-decimal space-y-3 pl-5 text-sm">
                <li>
                    <ActionForm action=start attr:class="flex flex-wrap items-center gap-3">
                        <Check label="Setup token (inference only, 1 year)" name="setup_token" checked=false />
                        <button id="oauth-start" type="submit" class=BUTTON_SMALL>"Get authorization link"</button>
                    </ActionForm>
                    {move || started().map(|s| view! {
                        <p class="mt-2 break-all">"Open: " <a id="oauth-url" href=s.auth_url.clone() target="_blank" rel="noopener" class="text-indigo-600 underline dark:text-indigo-400">{s.auth_url.clone()}</a></p>
                    })}
                </li>
                <li>
                    <ActionForm action=exchange attr:class="flex flex-wrap items-end gap-2">
                        <input type="hidden" name="session_id" prop:value=move || started().map(|s| s.session_id).unwrap_or_default() />
                        <label class="min-w-64 flex-1">"Paste the code (or the callback URL)"
                            <input id="oauth-code" name="code" class=INPUT />
                        </label>
                        <button id="oauth-exchange" type="submit" class=BUTTON_SMALL>"Exchange"</button>
                    </ActionForm>
                    {move || exchange.value().get().map(|r| match r {
                        Ok(_) => view! { <p id="oauth-ok" class="mt-1 text-emerald-700 dark:text-emerald-400">"Authorized. Name the account below and create it."</p> }.into_any(),
                        Err(e) => view! { <p role="alert" class="mt-1 text-red-600">{error_text_of(&e)}</p> }.into_any(),
                    })}
                </li>
                <li>"Fill in the form below and create the account."</li>
            </ol>
        </section>
    }
}

/// Test, state actions, error history and deletion of an existing account.
#[component]
fn AccountTools(id: String, detail: AccountDetail) -> impl IntoView {
    let test = ServerAction::<TestAccount>::new();
    let act = ServerAction::<AccountAction>::new();
    let del = ServerAction::<AccountAction>::new();
    let del_id = id.clone();
    let on_delete = move |_| {
        if window()
            .confirm_with_message("Delete this account? Keys bound to it fall back or fail.")
            .unwrap_or(false)
        {
            del.dispatch(AccountAction {
                id: del_id.clone(),
                action: "delete".into(),
            });
        }
    };
    let (id_test, id_pause, id_reset) = (id.clone(), id.clone(), id);
    Effect::new(move |_| {
        // After a delete there is nothing left to show here.
        if let Some(Ok(())) = del.value().get() {
            let _ = window().location().set_href("/admin-next/accounts");
        }
    });
    view! {
        <section class=format!("{CARD} mt-6")>
            <h2 class="mb-3 font-semibold">"Tools"</h2>
            <div class="flex flex-wrap items-center gap-2">
                <ActionForm action=test attr:class="inline">
                    <input type="hidden" name="id" value=id_test />
                    <button id="account-test" type="submit" class=BUTTON_SMALL>"Test account"</button>
                </ActionForm>
                <ActionButton act id=id_pause action="toggle-schedulable" label="Pause / resume" />
                <ActionButton act id=id_reset action="reset-status" label="Reset state" />
                <button id="account-delete" type="button" class=BUTTON_SMALL on:click=on_delete>"Delete account"</button>
            </div>
            {move || test.value().get().map(|r| match r {
                Ok(t) => view! {
                    <p id="account-test-result" class="mt-2 text-sm">
                        {if t.ok { "OK" } else { "Failed" }} " · HTTP " {t.status} " · " {t.latency_ms} " ms"
                        <span class="block truncate text-xs text-slate-500">{t.excerpt}</span>
                    </p>
                }.into_any(),
                Err(e) => view! { <p role="alert" class="mt-2 text-sm text-red-600">{error_text_of(&e)}</p> }.into_any(),
            })}
            <h3 class="mt-4 mb-2 font-semibold">"Error history"</h3>
            {if detail.errors.is_empty() {
                view! { <p id="error-history-empty" class="text-sm text-slate-500">"No errors recorded."</p> }.into_any()
            } else {
                view! {
                    <div class="overflow-x-auto">
                        <table id="error-history" class="w-full text-sm">
                            <thead><tr><th class=TH>"When"</th><th class=TH>"Class"</th><th class=TH>"Status"</th><th class=TH>"Cooldown"</th><th class=TH>"Message"</th></tr></thead>
                            <tbody>
                                {detail.errors.into_iter().map(|e| view! {
                                    <tr><td class=format!("{TD} text-xs")>{e.at}</td><td class=TD>{e.class}</td><td class=TD>{e.status}</td>
                                        <td class=TD>{format!("{} s", e.cooldown_secs)}</td><td class=format!("{TD} text-xs")>{e.message}</td></tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            }}
        </section>
    }
}
