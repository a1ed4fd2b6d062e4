//! The mock upstream as a standalone server, for benchmarks and manual runs:
//! `mock-upstream [ADDR]` (default 127.0.0.1:4000).

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4000".into());
    let Ok(addr) = addr.parse() else {
        eprintln!("mock-upstream: {addr:?} is not an address like 127.0.0.1:4000");
        std::process::exit(2);
    };
    let mock = crs::mock_upstream::MockUpstream::start_on(addr).await;
    println!("mock upstream listening on {}", mock.url());
    let _ = tokio::signal::ctrl_c().await;
}
