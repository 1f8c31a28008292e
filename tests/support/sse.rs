//! Reading a Server-Sent Events stream in a test: frames as they arrive, each waited
//! for with a deadline.

// Shared by several test binaries; each uses part of it.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

/// One SSE frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// `id:`, if any.
    pub id: Option<String>,
    /// `event:`, if any.
    pub event: Option<String>,
    /// `data:` as JSON (`Null` if not JSON).
    pub data: Value,
}

/// An open stream.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// Reads `response` (status checked by the caller) as an event stream.
    pub fn new(response: reqwest::Response) -> Self {
        Self { response, buffer: String::new() }
    }

    /// The next frame with data (keep-alive comments are skipped); panics naming
    /// `what` if none arrives within `limit`.
    pub async fn next(&mut self, limit: Duration, what: &str) -> Frame {
        let read = async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let raw: String = self.buffer.drain(..end + 2).collect();
                    if let Some(frame) = parse(&raw) {
                        return frame;
                    }
                    continue;
                }
                let chunk = self.response.chunk().await.expect("the stream reads").expect("the stream stays open");
                self.buffer.push_str(std::str::from_utf8(&chunk).expect("the stream is UTF-8"));
            }
        };
        tokio::time::timeout(limit, read).await.unwrap_or_else(|_| panic!("no event within {limit:?}: {what}"))
    }

    /// Whether the stream ends (esm closes it) within `limit`, whatever frames come
    /// before.
    pub async fn ended(&mut self, limit: Duration) -> bool {
        let read = async { while let Ok(Some(_)) = self.response.chunk().await {} };
        tokio::time::timeout(limit, read).await.is_ok()
    }

    /// The next frame whose event name is `event` (others are skipped).
    pub async fn next_named(&mut self, event: &str, limit: Duration) -> Frame {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next(left, event).await;
            if frame.event.as_deref() == Some(event) {
                return frame;
            }
        }
    }
}

fn parse(raw: &str) -> Option<Frame> {
    let (mut id, mut event, mut data) = (None, None, Vec::new());
    for line in raw.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim_start().to_owned());
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim_start().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
        }
    }
    if data.is_empty() {
        return None;
    }
    let data = data.join("\n");
    Some(Frame { id, event, data: serde_json::from_str(&data).unwrap_or(Value::Null) })
}
