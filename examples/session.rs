//! A trading session against a running `hundredx serve`: sign up, sign in, read the markets, open
//! a 10x long, read the balance, close the position, read the balance again — printing every
//! request and response.
//!
//! ```sh
//! cargo run --release -- serve --feed synthetic        # in one terminal
//! cargo run --example session                          # in another
//! cargo run --example session -- http://127.0.0.1:8080 # or name the server
//! ```
//!
//! The client is a few lines of HTTP/1.1 over a TCP socket, so the example needs nothing else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{SystemTime, UNIX_EPOCH};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Client {
    host: String,
    token: Option<String>,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.host);
        if let Some(t) = &self.token {
            req += &format!("Authorization: Bearer {t}\r\n");
        }
        if let Some(b) = body {
            req += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len());
        }
        req += "\r\n";
        req += body.unwrap_or("");
        let mut stream = TcpStream::connect(&self.host)?;
        stream.write_all(req.as_bytes())?;
        let mut resp = String::new();
        stream.read_to_string(&mut resp)?;
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        println!("> {method} {path} {}", body_or_empty(req.split("\r\n\r\n").nth(1)));
        println!("< {status} {body}\n");
        Ok((status, body.to_string()))
    }
}

fn body_or_empty(b: Option<&str>) -> &str {
    b.unwrap_or("")
}

/// The value of a top-level string field in a flat JSON object (enough for this example).
fn field(json: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":\"");
    let start = json.find(&key)? + key.len();
    Some(json[start..].split('"').next()?.to_string())
}

fn main() -> Result<()> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let host = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut c = Client { host, token: None };
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let creds =
        format!(r#"{{"email":"trader{stamp}@example.com","password":"correct horse battery"}}"#);

    c.call("POST", "/api/v1/user/signup", Some(&creds))?;
    let (status, body) = c.call("POST", "/api/v1/user/signin", Some(&creds))?;
    if status != 200 {
        return Err(format!("sign-in failed: {body}").into());
    }
    c.token = field(&body, "token");
    c.call("GET", "/api/v1/markets", None)?;
    let (status, body) = c.call(
        "POST",
        "/api/v1/positions",
        Some(r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"100"}"#),
    )?;
    if status != 201 {
        return Err(format!("open failed (is a feed running?): {body}").into());
    }
    let id = field(&body, "id").ok_or("no position id")?;
    c.call("GET", "/api/v1/user/balance", None)?;
    c.call("GET", &format!("/api/v1/positions/{id}"), None)?;
    c.call("POST", &format!("/api/v1/positions/{id}/close"), None)?;
    c.call("GET", "/api/v1/user/balance", None)?;
    Ok(())
}
