//! The `crs` operations commands, run as the built binary on the data a relay uses (a temp
//! embedded store, or a throwaway redis-server): keys, accounts, status, reset-password,
//! exit codes, and the healthcheck against a live relay.

mod common;

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::Duration,
};

use common::{body, Engine, Harness};
use crs::{config::Config, testing::RedisServer, Running};
use serde_json::{json, Value};

const ENCRYPTION_KEY: &str = "test-encryption-key-0123456789abcdef";
const PASSWORD: &str = "admin-password-1";

/// The environment `crs serve` would have: one data dir or one Redis.
struct Env {
    dir: tempfile::TempDir,
    redis: Option<RedisServer>,
}

impl Env {
    fn new(engine: Engine) -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
            redis: (engine == Engine::Redis).then(RedisServer::start),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crs"));
        c.args(args)
            // No .env is read from here, and nothing from the test's own environment leaks in.
            .current_dir(self.dir.path())
            .env_clear()
            .env("DATA_DIR", self.data_dir())
            .env(
                "PRICING_FILE",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../resources/model-pricing/model_prices_and_context_window.json"
                ),
            )
            .env("ENCRYPTION_KEY", ENCRYPTION_KEY)
            .env("ADMIN_PASSWORD", PASSWORD)
            .stdin(Stdio::null());
        if let Some(r) = &self.redis {
            c.env("REDIS_URL", r.url());
        }
        c
    }

    /// Runs `crs args…`; retried for a moment while a just-stopped relay still holds the
    /// embedded database.
    fn run(&self, args: &[&str]) -> Output {
        for _ in 0..100 {
            let out = self.command(args).output().expect("run crs");
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.code() == Some(1) && err.contains("running crs") {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            return out;
        }
        panic!("the embedded store stayed locked");
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "crs {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("crs {args:?}: {e}: {text}"))
    }

    fn config(&self) -> impl FnOnce(&mut Config) + '_ {
        move |c: &mut Config| {
            c.data_dir = self.data_dir();
            c.redis_url = self.redis.as_ref().map(|r| r.url());
            c.encryption_key = Some(ENCRYPTION_KEY.into());
        }
    }
}

async fn start_on(config: Config) -> Running {
    // A stopped relay's last connections may hold the embedded database for a moment.
    for _ in 0..100 {
        if let Ok(r) = crs::start(config.clone()).await {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crs::start(config).await.unwrap()
}

async fn login(h: &Harness, password: &str) -> u16 {
    h.http
        .post(h.url("/web/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `GET /web/auth/user` with the harness's session (signed in when the relay started).
async fn session_status(h: &Harness) -> u16 {
    h.http
        .get(h.url("/web/auth/user"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn keys_accounts_status_and_password(engine: Engine) {
    let env = Env::new(engine);

    // A key with limits, created before any relay ran on this data.
    let created = env.json(&[
        "keys",
        "create",
        "--name",
        "ci-key",
        "--daily-cost",
        "5",
        "--concurrency",
        "2",
        "--json",
    ]);
    let key = created["key"].as_str().unwrap().to_string();
    let key_id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("cr_"), "{created}");
    assert_eq!(created["dailyCostLimit"], 5.0);
    assert_eq!(created["concurrencyLimit"], 2);
    let table = env.ok(&["keys", "list"]);
    let row = table
        .lines()
        .find(|l| l.contains("ci-key"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains(&key_id) && row.contains("active") && row.contains("$5.00"),
        "{row}"
    );
    assert!(!table.contains(&key), "the key itself is never listed");
    let listed = env.json(&["keys", "list", "--json"]);
    assert_eq!(listed[0]["id"], key_id.as_str());
    assert_eq!(listed[0]["state"], "active");

    // The relay on the same data accepts it.
    let mut h = Harness::with_config(Engine::Embedded, env.config()).await;
    let account = h.account("acct-one", None, 1).await;
    let r = h.messages(&key, body(false)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mut config = h.relay().state.config.clone();
    // A session signed in before the password reset below.
    assert_eq!(session_status(&h).await, 200);
    h.wait_requests(&crs::store::buckets::key_total(&key_id), 1)
        .await;
    // The embedded store is one process's: the relay stops while the commands run.
    if engine == Engine::Embedded {
        h.relay.take().unwrap().stop().await;
    }

    assert!(env.ok(&["keys", "disable", "ci-key"]).contains("disabled"));
    assert_eq!(
        env.json(&["keys", "list", "--json"])[0]["state"],
        "disabled"
    );

    // Accounts: pause and resume by id or name.
    let accounts = env.json(&["accounts", "list", "--json"]);
    assert_eq!(accounts[0]["id"], account.as_str());
    assert_eq!(accounts[0]["state"], "normal");
    assert!(env.ok(&["accounts", "pause", &account]).contains("paused"));
    let accounts = env.json(&["accounts", "list", "--json"]);
    assert_eq!(accounts[0]["state"], "paused");
    assert_eq!(accounts[0]["schedulable"], false);
    let table = env.ok(&["accounts", "list"]);
    assert!(
        table.contains("acct-one") && table.contains("paused"),
        "{table}"
    );
    env.ok(&["accounts", "resume", "acct-one"]);
    assert_eq!(
        env.json(&["accounts", "list", "--json"])[0]["state"],
        "normal"
    );

    // Status: the store, the accounts by state, today's usage (the one request above).
    let status = env.json(&["status", "--json"]);
    assert_eq!(status["store"]["status"], "ok");
    assert_eq!(
        status["store"]["engine"],
        if engine == Engine::Redis {
            "redis"
        } else {
            "embedded"
        }
    );
    assert_eq!(status["accounts"]["total"], 1);
    assert_eq!(status["accounts"]["byState"]["normal"], 1);
    assert_eq!(status["keys"]["total"], 1);
    assert_eq!(status["today"]["requests"], 1);
    assert!(status["today"]["costNanos"].as_u64().unwrap() > 0);
    let text = env.ok(&["status"]);
    assert!(text.contains("today:    1 requests"), "{text}");
    assert!(text.contains("normal 1"), "{text}");

    // A new admin password, generated and printed once.
    let new_password = env.ok(&["admin", "reset-password"]).trim().to_string();
    assert_eq!(new_password.len(), 24, "{new_password}");

    if engine == Engine::Embedded {
        config.port = 0;
        h.relay = Some(start_on(config).await);
    }
    // The disabled key is refused by the relay.
    let r = h.messages(&key, body(false)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("disabled"));
    assert_eq!(login(&h, PASSWORD).await, 401, "the old password is gone");
    assert_eq!(
        session_status(&h).await,
        401,
        "a reset ends the sessions signed in before it"
    );
    assert_eq!(login(&h, &new_password).await, 200);

    // And set from stdin.
    if engine == Engine::Embedded {
        h.relay.take().unwrap().stop().await;
    }
    let mut child = env
        .command(&["admin", "reset-password", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"chosen-password-42\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if engine == Engine::Embedded {
        let mut config = Config::for_tests(env.data_dir());
        env.config()(&mut config);
        h.relay = Some(start_on(config).await);
    }
    assert_eq!(login(&h, "chosen-password-42").await, 200);
    assert_eq!(login(&h, &new_password).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_keys_accounts_status_and_password() {
    keys_accounts_status_and_password(Engine::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_accounts_status_and_password() {
    keys_accounts_status_and_password(Engine::Redis).await
}

#[test]
fn bad_usage_and_configuration_exit_2_with_one_line() {
    let env = Env::new(Engine::Embedded);
    for args in [
        vec!["no-such-command"],
        vec!["keys", "create"],
        vec!["keys", "create", "--name", "x", "--daily-cost", "lots"],
        vec!["keys", "create", "--name", "x", "--rate-requests", "5"],
        vec!["keys", "create", "--name", "x", "--expires", "soon"],
        vec![
            "keys",
            "create",
            "--name",
            "x",
            "--permission",
            "everything",
        ],
        vec!["accounts", "pause"],
        vec!["pricing", "update"],
        vec!["pricing", "update", "--file", "a", "--url", "http://x"],
    ] {
        let out = env.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "crs {args:?}: {err}");
    }
    // A bad configuration: one line naming the variable.
    let out = env
        .command(&["status"])
        .env("PORT", "abc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("PORT"), "{err}");
    // Validation by the admin API's rules: a bad permission is bad usage too, in one line.
    let out = env.run(&[
        "keys",
        "create",
        "--name",
        "x",
        "--permission",
        "everything",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown permission"), "{err}");
    // Failures that are not usage: exit 1.
    let out = env.run(&["keys", "disable", "no-such-key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API key"));
    // Help is not an error.
    for args in [
        vec!["--help"],
        vec!["keys", "--help"],
        vec!["keys", "create", "--help"],
        vec!["accounts", "--help"],
        vec!["admin", "reset-password", "--help"],
        vec!["pricing", "update", "--help"],
        vec!["status", "--help"],
    ] {
        assert_eq!(env.run(&args).status.code(), Some(0), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_against_a_live_relay() {
    let h = Harness::new(Engine::Embedded).await;
    let env = Env::new(Engine::Embedded);
    let port = h.relay().addr.port().to_string();
    let check = |port: &str| {
        env.command(&["healthcheck"])
            .env("PORT", port)
            .env("HOST", "0.0.0.0")
            .output()
            .unwrap()
    };
    let out = tokio::task::spawn_blocking({
        let port = port.clone();
        let cmd = env.command(&["healthcheck"]);
        move || {
            let mut cmd = cmd;
            cmd.env("PORT", port)
                .env("HOST", "0.0.0.0")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("healthy"));
    let url = format!("{}/health", h.relay().url());
    let out = tokio::task::spawn_blocking({
        let mut cmd = env.command(&["healthcheck", "--url", &url]);
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    // Nothing listening: unhealthy, exit 1, one line.
    let closed = crs::testing::free_port().to_string();
    let out = check(&closed);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim().lines().count(),
        1
    );
}
