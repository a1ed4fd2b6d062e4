//! Support for tests and benchmarks: a throwaway `redis-server` on a free port (never the
//! user's Redis on 6379), and a free-port helper.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A `redis-server` this process started; killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(redis_binary())
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed to run the Redis tests");
            if wait_ready(&mut child, port) {
                return RedisServer {
                    child,
                    port,
                    _dir: dir,
                };
            }
            // Lost a race for the port: try another.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start redis-server on a free port");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            // Another test's server may have won this port: ready only if it is ours.
            return serves_pid(conn, child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Whether the Redis server on `conn` runs as process `pid` (from `INFO server`).
fn serves_pid(mut conn: std::net::TcpStream, pid: u32) -> bool {
    use std::io::{Read, Write};
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if conn
        .write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let want = format!("process_id:{pid}\r\n");
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        if text.contains(&want) {
            return true;
        }
        if text.contains("process_id:") && text.ends_with("\r\n\r\n") {
            break;
        }
    }
    false
}

fn redis_binary() -> PathBuf {
    std::env::var_os("REDIS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// Minimal forwarding proxies (HTTP and SOCKS5, optionally with credentials), to show that
/// an account's traffic really goes through its proxy.
pub mod proxy {
    use std::sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    };

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    pub struct TestProxy {
        pub port: u16,
        /// Connections the proxy relayed.
        pub relayed: Arc<AtomicU64>,
        /// Connections refused for bad credentials.
        pub refused: Arc<AtomicU64>,
        handle: tokio::task::JoinHandle<()>,
    }

    impl Drop for TestProxy {
        fn drop(&mut self) {
            self.handle.abort();
        }
    }

    type Creds = Option<(String, String)>;

    async fn start(
        kind: fn(TcpStream, Creds, Arc<AtomicU64>, Arc<AtomicU64>) -> tokio::task::JoinHandle<()>,
        creds: Creds,
    ) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let port = listener.local_addr().expect("proxy addr").port();
        let (relayed, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (r, f) = (relayed.clone(), refused.clone());
        let handle = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                kind(conn, creds.clone(), r.clone(), f.clone());
            }
        });
        TestProxy {
            port,
            relayed,
            refused,
            handle,
        }
    }

    /// An HTTP proxy for `http://` targets (absolute-form requests).
    pub async fn http(creds: Creds) -> TestProxy {
        start(
            |c, creds, r, f| tokio::spawn(http_conn(c, creds, r, f)),
            creds,
        )
        .await
    }

    /// A SOCKS5 proxy (RFC 1928, with RFC 1929 username/password when `creds` is set).
    pub async fn socks5(creds: Creds) -> TestProxy {
        start(
            |c, creds, r, f| tokio::spawn(socks_conn(c, creds, r, f)),
            creds,
        )
        .await
    }

    async fn http_conn(
        mut client: TcpStream,
        creds: Creds,
        relayed: Arc<AtomicU64>,
        refused: Arc<AtomicU64>,
    ) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if client.read(&mut byte).await.unwrap_or(0) == 0 || head.len() > 65_536 {
                return;
            }
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let (method, target, version) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        if let Some((user, pass)) = &creds {
            use base64::Engine;
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            );
            let ok = lines.clone().any(|l| {
                l.to_ascii_lowercase().starts_with("proxy-authorization:") && l[20..].trim() == want
            });
            if !ok {
                refused.fetch_add(1, Ordering::SeqCst);
                let _ = client
                    .write_all(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n",
                    )
                    .await;
                return;
            }
        }
        let Some(rest) = target.strip_prefix("http://") else {
            return;
        };
        let (authority, path) = rest
            .split_once('/')
            .map(|(a, p)| (a, format!("/{p}")))
            .unwrap_or((rest, "/".into()));
        let Ok(mut upstream) = TcpStream::connect(authority).await else {
            return;
        };
        relayed.fetch_add(1, Ordering::SeqCst);
        let mut new_head = format!("{method} {path} {version}\r\n");
        for l in lines.filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("proxy-")) {
            new_head.push_str(l);
            new_head.push_str("\r\n");
        }
        new_head.push_str("\r\n");
        if upstream.write_all(new_head.as_bytes()).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }

    async fn socks_conn(
        mut c: TcpStream,
        creds: Creds,
        relayed: Arc<AtomicU64>,
        refused: Arc<AtomicU64>,
    ) {
        let mut hello = [0u8; 2];
        if c.read_exact(&mut hello).await.is_err() || hello[0] != 5 {
            return;
        }
        let mut methods = vec![0u8; hello[1] as usize];
        if c.read_exact(&mut methods).await.is_err() {
            return;
        }
        match &creds {
            Some((user, pass)) => {
                if !methods.contains(&2) || c.write_all(&[5, 2]).await.is_err() {
                    refused.fetch_add(1, Ordering::SeqCst);
                    let _ = c.write_all(&[5, 0xff]).await;
                    return;
                }
                let mut ver_len = [0u8; 2];
                if c.read_exact(&mut ver_len).await.is_err() {
                    return;
                }
                let mut u = vec![0u8; ver_len[1] as usize];
                let mut plen = [0u8; 1];
                if c.read_exact(&mut u).await.is_err() || c.read_exact(&mut plen).await.is_err() {
                    return;
                }
                let mut p = vec![0u8; plen[0] as usize];
                if c.read_exact(&mut p).await.is_err() {
                    return;
                }
                if u != user.as_bytes() || p != pass.as_bytes() {
                    refused.fetch_add(1, Ordering::SeqCst);
                    let _ = c.write_all(&[1, 1]).await;
                    return;
                }
                if c.write_all(&[1, 0]).await.is_err() {
                    return;
                }
            }
            None => {
                if c.write_all(&[5, 0]).await.is_err() {
                    return;
                }
            }
        }
        let mut req = [0u8; 4];
        if c.read_exact(&mut req).await.is_err() || req[1] != 1 {
            return;
        }
        let host = match req[3] {
            1 => {
                let mut ip = [0u8; 4];
                if c.read_exact(&mut ip).await.is_err() {
                    return;
                }
                std::net::Ipv4Addr::from(ip).to_string()
            }
            3 => {
                let mut len = [0u8; 1];
                if c.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut name = vec![0u8; len[0] as usize];
                if c.read_exact(&mut name).await.is_err() {
                    return;
                }
                String::from_utf8_lossy(&name).to_string()
            }
            _ => return,
        };
        let mut port = [0u8; 2];
        if c.read_exact(&mut port).await.is_err() {
            return;
        }
        let Ok(mut upstream) = TcpStream::connect((host.as_str(), u16::from_be_bytes(port))).await
        else {
            let _ = c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
            return;
        };
        relayed.fetch_add(1, Ordering::SeqCst);
        if c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut c, &mut upstream).await;
    }
}
