//! The deployment assets at the repository root, checked where no Docker engine runs: the
//! Dockerfile's stages reference real paths, the runtime stage runs as a non-root user it
//! creates, its HEALTHCHECK and CMD are real subcommands of the binary, and docker-compose.yml
//! runs the relay on a persistent Redis.

use std::{path::PathBuf, process::Command};

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// One Dockerfile instruction: (keyword, arguments), continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (kw, rest) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((kw.to_ascii_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    out
}

struct Stage {
    name: String,
    lines: Vec<(String, String)>,
}

fn stages(text: &str) -> Vec<Stage> {
    let mut out: Vec<Stage> = Vec::new();
    for (kw, args) in instructions(text) {
        if kw == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => name.to_string(),
                _ => String::new(),
            };
            out.push(Stage {
                name,
                lines: Vec::new(),
            });
        } else if let Some(s) = out.last_mut() {
            s.lines.push((kw, args));
        }
    }
    out
}

/// The arguments of an exec-form (`["a", "b"]`) or shell-form instruction.
fn words(args: &str) -> Vec<String> {
    let a = args.trim();
    if a.starts_with('[') {
        serde_json::from_str(a).unwrap_or_else(|e| panic!("bad exec form {a}: {e}"))
    } else {
        a.split_whitespace().map(str::to_string).collect()
    }
}

fn dockerignore() -> Vec<String> {
    read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/').trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn dockerfile_copies_only_real_paths_from_the_context() {
    let text = read("Dockerfile");
    let all = stages(&text);
    assert!(all.len() >= 2, "a multi-stage build");
    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    let ignored = dockerignore();
    let mut checked = 0;
    for stage in &all {
        for (kw, args) in &stage.lines {
            if kw != "COPY" && kw != "ADD" {
                continue;
            }
            let mut parts: Vec<String> = words(args);
            let from = parts
                .iter()
                .find_map(|p| p.strip_prefix("--from=").map(str::to_string));
            parts.retain(|p| !p.starts_with("--"));
            assert!(parts.len() >= 2, "{kw} {args}: a source and a destination");
            let sources = &parts[..parts.len() - 1];
            if let Some(from) = from {
                // From an earlier stage or an image: the stage must exist when named.
                if !from.contains(':') && !from.contains('/') {
                    assert!(
                        names.contains(&from.as_str()),
                        "COPY --from={from}: no such stage"
                    );
                }
                continue;
            }
            for src in sources {
                let path = root().join(src);
                assert!(
                    src == "." || path.exists(),
                    "COPY source {src} does not exist in the repository"
                );
                let top = src.trim_start_matches("./").split('/').next().unwrap_or("");
                assert!(
                    src == "." || !ignored.iter().any(|i| i == top || i == src),
                    "COPY source {src} is excluded by .dockerignore"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "the context copies were checked ({checked})");
    // The build runs the project's own scripts, and they exist.
    for script in ["scripts/setup-tools.sh", "scripts/build-site.sh --release"] {
        assert!(text.contains(script), "the build runs {script}");
        let file = script.split_whitespace().next().unwrap();
        assert!(root().join(file).exists(), "{file}");
    }
    // What the build needs is not ignored; what must stay out is.
    for must_stay in ["Cargo.toml", "app", "frontend", "server", "public", "style"] {
        assert!(
            !ignored.iter().any(|i| i == must_stay),
            "{must_stay} is needed by the build"
        );
    }
    for must_go in ["target", "node_modules", ".env", ".git", "data"] {
        assert!(
            ignored.iter().any(|i| i == must_go),
            "{must_go} must not be in the context"
        );
    }
}

#[test]
fn runtime_stage_runs_as_a_non_root_user_it_creates() {
    let all = stages(&read("Dockerfile"));
    let runtime = all.last().unwrap();
    let user = runtime
        .lines
        .iter()
        .filter(|(kw, _)| kw == "USER")
        .map(|(_, a)| a.trim().to_string())
        .next_back()
        .expect("the runtime stage sets USER");
    let user_name = user.split(':').next().unwrap().to_string();
    assert!(
        !["root", "0", ""].contains(&user_name.as_str()),
        "runs as {user_name}"
    );
    let created = runtime.lines.iter().any(|(kw, a)| {
        kw == "RUN"
            && (a.contains("useradd") || a.contains("adduser"))
            && a.split_whitespace().any(|w| w == user_name)
    });
    assert!(created, "user {user_name} is created in the runtime stage");
    // The binary, the site and the pricing table are in the image where ENV says.
    let env: String = runtime
        .lines
        .iter()
        .filter(|(kw, _)| kw == "ENV")
        .map(|(_, a)| a.clone())
        .collect::<Vec<_>>()
        .join(" ");
    let copies: Vec<&String> = runtime
        .lines
        .iter()
        .filter(|(kw, _)| kw == "COPY")
        .map(|(_, a)| a)
        .collect();
    for (var, dest) in [
        ("SITE_ROOT", "/app/site"),
        ("PRICING_FILE", "/app/resources"),
    ] {
        assert!(
            env.contains(&format!("{var}={dest}")),
            "ENV {var} points at {dest}"
        );
        assert!(
            copies.iter().any(|c| c.trim_end().ends_with(dest)),
            "{dest} is copied into the runtime stage"
        );
    }
    assert!(copies.iter().any(|c| c.contains("target/release/crs")));
}

/// Runs the built binary with `args`; its exit code.
fn crs(args: &[&str]) -> i32 {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_crs"))
        .args(args)
        .current_dir(dir.path())
        .env("PORT", "1")
        .output()
        .expect("run crs")
        .status
        .code()
        .unwrap_or(-1)
}

#[test]
fn healthcheck_and_cmd_are_subcommands_of_the_binary() {
    let all = stages(&read("Dockerfile"));
    let runtime = all.last().unwrap();
    let find = |kw: &str| {
        runtime
            .lines
            .iter()
            .find(|(k, _)| k == kw)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("the runtime stage has {kw}"))
    };
    let health = find("HEALTHCHECK");
    let cmd_at = health.find("CMD").expect("HEALTHCHECK CMD");
    let check = words(&health[cmd_at + 3..]);
    assert_eq!(
        check[0], "crs",
        "the image checks itself with its own binary"
    );
    assert_eq!(
        crs(&[&check[1], "--help"]),
        0,
        "`crs {} --help` exists",
        check[1]
    );
    // Run as given against nothing listening: exit 1 (unhealthy), not a usage error.
    let args: Vec<&str> = check[1..].iter().map(String::as_str).collect();
    assert_eq!(crs(&args), 1, "`crs {}` with no relay", args.join(" "));
    let entry = words(&find("ENTRYPOINT"));
    assert_eq!(entry.last().map(String::as_str), Some("crs"));
    let cmd = words(&find("CMD"));
    assert_eq!(cmd, ["serve"]);
    assert_eq!(crs(&["serve", "--help"]), 0);
}

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn as_strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(s) => s
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn compose_runs_the_relay_on_a_persistent_redis() {
    let compose: Value = serde_yaml::from_str(&read("docker-compose.yml")).expect("valid YAML");
    let relay = get(&compose, &["services", "relay"]);
    let redis = get(&compose, &["services", "redis"]);
    assert!(relay.is_mapping(), "a relay service");
    assert!(redis.is_mapping(), "a redis service");
    // Redis persists: append-only file on, its data dir on a named volume.
    let command = as_strings(&redis["command"]).join(" ");
    assert!(command.contains("--appendonly yes"), "{command}");
    let volumes = as_strings(&redis["volumes"]);
    let data = volumes
        .iter()
        .find(|v| v.ends_with(":/data"))
        .expect("redis /data on a volume");
    let volume_name = data.split(':').next().unwrap();
    assert!(
        !get(&compose, &["volumes", volume_name]).is_null()
            || compose["volumes"]
                .as_mapping()
                .is_some_and(|m| m.contains_key(volume_name)),
        "volume {volume_name} is declared"
    );
    // The relay waits for Redis and points at it.
    let depends = match &relay["depends_on"] {
        Value::Mapping(m) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        other => as_strings(other),
    };
    assert!(
        depends.iter().any(|d| d == "redis"),
        "relay depends on redis"
    );
    let env = &relay["environment"];
    let var = |name: &str| -> String {
        match env {
            Value::Mapping(m) => m
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
            Value::Sequence(_) => as_strings(env)
                .iter()
                .find_map(|e| e.strip_prefix(&format!("{name}=")).map(str::to_string))
                .unwrap_or_default(),
            _ => String::new(),
        }
    };
    let redis_url = var("REDIS_URL");
    assert!(
        redis_url.starts_with("redis://redis:6379"),
        "REDIS_URL={redis_url}"
    );
    assert!(
        !var("ENCRYPTION_KEY").is_empty(),
        "ENCRYPTION_KEY is required with Redis"
    );
    // Settings from .env; the relay built from this repository's Dockerfile; its data kept.
    let env_files = format!("{:?}", relay["env_file"]);
    assert!(env_files.contains(".env"), "{env_files}");
    assert!(
        !relay["build"].is_null(),
        "the relay is built from the Dockerfile"
    );
    let relay_volumes = as_strings(&relay["volumes"]);
    assert!(relay_volumes.iter().any(|v| v.ends_with(":/app/data")));
    let ports = as_strings(&relay["ports"]);
    assert!(ports.iter().any(|p| p.ends_with(":3000")), "{ports:?}");
}

/// `docker compose config` where the Compose plugin exists (not on every machine).
#[test]
fn docker_compose_config_accepts_the_file() {
    let has_compose = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_compose {
        eprintln!("docker compose is not installed here: YAML checks only");
        return;
    }
    let out = Command::new("docker")
        .args(["compose", "-f"])
        .arg(root().join("docker-compose.yml"))
        .args(["config", "--quiet"])
        .env("ENCRYPTION_KEY", "0123456789abcdef0123456789abcdef")
        .output()
        .expect("docker compose config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
