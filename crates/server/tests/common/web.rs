//! A browser of sorts for the dashboard's tests: raw HTTP/1.1 over TCP with a cookie jar.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::IO_TIMEOUT;

/// One HTTP response.
pub struct Http {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Http {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A browser of sorts: one cookie jar, raw HTTP/1.1 over TCP, one request a connection.
pub struct Client {
    pub port: u16,
    pub cookie: Option<String>,
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client { port, cookie: None }
    }

    pub fn request(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Http {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to --http");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let body = form.map(|f| {
            f.iter()
                .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                .collect::<Vec<_>>()
                .join("&")
        });
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Some(c) = &self.cookie {
            req += &format!("Cookie: {c}\r\n");
        }
        if let Some(b) = &body {
            req += &format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                b.len()
            );
        }
        req += "\r\n";
        req += body.as_deref().unwrap_or("");
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the response");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        let r = Http {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        };
        if let Some(c) = r.header("set-cookie") {
            let kv = c.split(';').next().unwrap().to_string();
            self.cookie = if kv.ends_with('=') { None } else { Some(kv) };
        }
        r
    }

    pub fn get(&mut self, path: &str) -> Http {
        self.request("GET", path, None)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Http {
        self.request("POST", path, Some(form))
    }

    /// The CSRF token of the session (from the overview's forms).
    pub fn csrf(&mut self) -> String {
        let page = self.get("/").text();
        let at = page
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token");
        page[at + 19..].split('"').next().unwrap().to_string()
    }
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
