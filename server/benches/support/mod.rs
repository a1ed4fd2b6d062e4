//! What the benchmarks share: their command-line options, child processes that die with the
//! benchmark, a process's memory from `/proc`, and set-up calls to the relay's admin API.
#![allow(dead_code)]

use std::{collections::HashMap, process::Child, str::FromStr};

/// Options after `cargo bench … --`: `--name value` for the names in `values`, bare switches
/// for those in `switches`; anything else (cargo passes `--bench`) is ignored.
pub struct Flags(HashMap<String, Option<String>>);

impl Flags {
    pub fn from_env(values: &[&str], switches: &[&str]) -> Self {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let mut found = HashMap::new();
        let mut i = 0;
        while i < argv.len() {
            let name = argv[i].trim_start_matches("--");
            if values.contains(&name) {
                found.insert(name.to_string(), argv.get(i + 1).cloned());
                i += 2;
            } else {
                if switches.contains(&name) {
                    found.insert(name.to_string(), None);
                }
                i += 1;
            }
        }
        Flags(found)
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.as_deref()
    }

    /// The option parsed; a value that does not parse stops the benchmark with its name.
    pub fn get<T: FromStr>(&self, name: &str) -> Option<T> {
        self.str(name).map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("--{name}: {v:?} is not a valid value"))
        })
    }

    /// `--engine redis|embedded` as the list of engines to run (both without it).
    pub fn engines(&self) -> Vec<&'static str> {
        match self.str("engine") {
            Some("redis") => vec!["redis"],
            Some(_) => vec!["embedded"],
            None => vec!["embedded", "redis"],
        }
    }
}

/// A child process killed when dropped, so a panic never leaves a server behind.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KB.
pub fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn mb(kb: u64) -> String {
    format!("{kb} KB ({:.1} MB)", kb as f64 / 1024.0)
}

/// Set-up through the relay's admin API: POSTs `body` (with the session `token`, if any) and
/// returns the JSON answer. A benchmark cannot go on without it, so a failure panics.
pub async fn admin_post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: serde_json::Value,
    token: Option<&str>,
) -> serde_json::Value {
    let mut req = client.post(format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = r.status();
    let v: serde_json::Value = r
        .json()
        .await
        .unwrap_or_else(|e| panic!("POST {path} body: {e}"));
    assert!(status.is_success(), "POST {path}: {status} {v}");
    v
}
