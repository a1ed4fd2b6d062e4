//! The request log: every key's newest requests in one bounded list, filtered on the server,
//! exported as CSV.

mod common;

use common::{Engine, Harness, MODEL};
use serde_json::json;

both_engines!(request_log_filters_and_exports);

async fn request_log_filters_and_exports(engine: Engine) {
    let h = Harness::with_config(engine, |c| {
        c.request_records_kept = 3;
        c.record_body_preview_chars = 40;
    })
    .await;
    h.account("log account", None, 10).await;
    let (id_a, key_a) = h.key(json!({"name": "alpha key"})).await;
    let (_, key_b) = h.key(json!({"name": "beta key"})).await;
    let haiku = "claude-haiku-4-5-20251001";
    for (key, model) in [
        (&key_a, MODEL),
        (&key_a, MODEL),
        (&key_b, haiku),
        (&key_a, haiku),
    ] {
        let mut b = common::body(false);
        b["model"] = json!(model);
        let r = h.messages(key, b).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    h.wait_requests(&crs::store::buckets::global_total(), 4)
        .await;

    let get = |q: String| {
        let h = &h;
        async move {
            let (status, body) = h
                .admin(
                    reqwest::Method::GET,
                    &format!("/admin/request-records{q}"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body["data"].clone()
        }
    };
    // Only the newest 3 are kept (REQUEST_RECORDS_KEPT), newest first.
    let all = get("".into()).await;
    assert_eq!(all["matching"], 3);
    let rows = all["rows"].as_array().unwrap();
    assert_eq!(rows[0]["record"]["model"], haiku);
    assert_eq!(rows[0]["keyName"], "alpha key");
    assert_eq!(rows[0]["accountName"], "log account");
    assert_eq!(all["total"]["requests"], 3);
    // The redacted preview, when configured (off by default).
    assert_eq!(rows[0]["record"]["bodyPreview"], "Say hello");

    assert_eq!(get("?key=alpha%20key".into()).await["matching"], 2);
    assert_eq!(get(format!("?key={id_a}")).await["matching"], 2);
    assert_eq!(get("?model=claude-haiku*".into()).await["matching"], 2);
    assert_eq!(
        get("?key=beta%20key&model=claude-haiku*".into()).await["matching"],
        1
    );
    assert_eq!(get("?status=2xx".into()).await["matching"], 3);
    assert_eq!(get("?status=5xx".into()).await["matching"], 0);
    assert_eq!(get("?since=2999-01-01".into()).await["matching"], 0);
    assert_eq!(
        get("?until=2999-01-01&account=log%20account".into()).await["matching"],
        3
    );

    let csv = reqwest::Client::new()
        .get(h.url("/admin/request-records.csv?model=claude-haiku*"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("timestamp,request_id,key_id,key_name"));
    assert!(lines
        .iter()
        .any(|l| l.contains("beta key") && l.contains(haiku)));
    // Without a session: refused.
    let anon = reqwest::get(h.url("/admin/request-records.csv"))
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
}
