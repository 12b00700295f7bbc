//! Incremental Server-Sent Events parsing and the chat-chunk decoder on top of it.
//!
//! Streams arrive in TCP reads that split events anywhere — inside a line, inside a UTF-8
//! character, between `\r` and `\n` — or pack several events into one read. [`SseParser`]
//! turns any split of the same bytes into the same [`SseEvent`]s (it is pure and
//! allocation-light, so it is property-tested), and [`ChunkDecoder`] turns events into
//! [`StreamChunk`]s and decides whether the stream ended properly: a stream that stops
//! before `[DONE]` without every choice finished (and, when asked for, the usage chunk)
//! is a [`ConnectorError::Stream`], never a silent success.

use std::collections::VecDeque;

use super::error::ConnectorError;
use super::types::StreamChunk;
use super::wire::ChatChunk;

/// One dispatched SSE event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if the event had one.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// An incremental SSE parser (the WHATWG event-stream grammar): lines end with `\n`,
/// `\r\n` or `\r`; a blank line dispatches the event; lines starting with `:` are comments;
/// `id:` and `retry:` are accepted and ignored.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: String,
    has_data: bool,
    event: Option<String>,
    skip_lf: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes the next bytes of the stream, pushing each completed event onto `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) {
        let mut rest = bytes;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            if self.line.is_empty() {
                self.process_line(&rest[..i], out);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&rest[..i]);
                self.process_line(&line, out);
                line.clear();
                self.line = line;
            }
            let terminator = rest[i];
            rest = &rest[i + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
        }
        self.line.extend_from_slice(rest);
    }

    /// Ends the stream: returns the event that was still open (data received but no blank
    /// line yet, including an unterminated last line), if any. The caller decides whether
    /// such a truncated event is acceptable.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let mut sink = Vec::new();
            self.process_line(&line, &mut sink);
            debug_assert!(sink.is_empty(), "a non-empty line never dispatches");
        }
        self.has_data.then(|| self.take_event())
    }

    fn take_event(&mut self) -> SseEvent {
        self.has_data = false;
        SseEvent {
            event: self.event.take(),
            data: std::mem::take(&mut self.data),
        }
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(self.take_event());
            } else {
                self.event = None;
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
}

/// Turns chat-completion SSE events into [`StreamChunk`]s and checks the stream's ending.
#[derive(Debug)]
pub struct ChunkDecoder {
    expect_usage: bool,
    done: bool,
    usage_seen: bool,
    /// `(choice index, finished)` for every choice seen; `n` is small.
    choices: Vec<(u32, bool)>,
}

impl ChunkDecoder {
    /// A decoder; `expect_usage` when the request asked for `stream_options.include_usage`.
    pub fn new(expect_usage: bool) -> Self {
        Self {
            expect_usage,
            done: false,
            usage_seen: false,
            choices: Vec::new(),
        }
    }

    /// Whether `[DONE]` was received (later events are ignored).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Decodes one event, pushing its chunks onto `out`. An `error` event, an
    /// `{"error": …}` payload or a payload that is not a chunk is a
    /// [`ConnectorError::Stream`].
    pub fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut VecDeque<StreamChunk>,
    ) -> Result<(), ConnectorError> {
        if self.done {
            return Ok(());
        }
        let data = event.data.trim();
        if event.event.as_deref() == Some("error") {
            return Err(stream_error(format!(
                "provider sent an error event: {data}"
            )));
        }
        if data.is_empty() {
            return Ok(());
        }
        if data.starts_with("[DONE]") {
            self.done = true;
            return Ok(());
        }
        let chunk: ChatChunk = serde_json::from_str(data)
            .map_err(|e| stream_error(format!("unparseable chunk ({e}): {}", clip(data))))?;
        if let Some(err) = chunk.error.clone() {
            let detail = err.into_detail();
            let message = detail.message.unwrap_or_else(|| clip(data).to_owned());
            return Err(stream_error(format!("provider error in stream: {message}")));
        }
        chunk.for_each_chunk(|c| {
            if c.usage.is_some() {
                self.usage_seen = true;
            } else {
                self.track(c.index, c.finish_reason.is_some());
            }
            out.push_back(c);
        });
        Ok(())
    }

    /// Ends the stream. `open_event` is what [`SseParser::finish`] returned: it is decoded
    /// if it is a complete payload (a server that omits the last blank line), and makes the
    /// stream an error if it was cut inside. Then the stream must have seen `[DONE]`, or
    /// every choice finished and (when expected) the usage chunk.
    pub fn finish(
        &mut self,
        open_event: Option<SseEvent>,
        out: &mut VecDeque<StreamChunk>,
    ) -> Result<(), ConnectorError> {
        if let Some(event) = open_event {
            self.on_event(&event, out).map_err(|e| match e {
                ConnectorError::Stream { message } => {
                    stream_error(format!("stream ended inside an event: {message}"))
                }
                other => other,
            })?;
        }
        if self.done {
            return Ok(());
        }
        let unfinished: Vec<u32> = self
            .choices
            .iter()
            .filter(|(_, finished)| !finished)
            .map(|(i, _)| *i)
            .collect();
        if self.choices.is_empty() {
            Err(stream_error(
                "stream ended before [DONE] without any choice".into(),
            ))
        } else if !unfinished.is_empty() {
            Err(stream_error(format!(
                "stream ended before [DONE] with choices {unfinished:?} unfinished (no finish_reason)"
            )))
        } else if self.expect_usage && !self.usage_seen {
            Err(stream_error(
                "stream ended before [DONE] and before the usage chunk".into(),
            ))
        } else {
            Ok(())
        }
    }

    fn track(&mut self, index: u32, finished: bool) {
        match self.choices.iter_mut().find(|(i, _)| *i == index) {
            Some(entry) => entry.1 |= finished,
            None => self.choices.push((index, finished)),
        }
    }
}

fn stream_error(message: String) -> ConnectorError {
    ConnectorError::Stream { message }
}

/// At most 200 bytes of `s`, cut on a character boundary, for error messages.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
