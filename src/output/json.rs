//! One JSON object per line on stdout, each with an `"event"` field (SPEC §7).

use std::io::Write;

use serde_json::{json, Value};

use crate::core::plan::Resolution;
use crate::output::{Event, Reporter};

/// Writes events as JSON lines.
#[derive(Default)]
pub struct Json {
    /// Lines not yet written: verify's per-file events, which come by the hundred
    /// thousand and back to back, go out in blocks; every other event flushes them first,
    /// so a monitor never waits on a line it was sent.
    held: Vec<u8>,
}

/// Most bytes of held lines before they are written.
const HOLD: usize = 64 << 10;

fn event_value(event: &Event<'_>) -> Value {
    match event {
        Event::File {
            path,
            status,
            side,
            bytes,
            reason,
            restored,
        } => json!({
            "event": "file", "path": path.escaped(), "status": status.word(),
            "side": side.map(|s| s.word()), "bytes": bytes, "reason": reason,
            "restored": restored,
        }),
        Event::Conflict {
            path,
            reason,
            resolution,
        } => {
            let (resolution, kept, renamed_to) = match resolution {
                Resolution::Unresolved => ("unresolved", None, None),
                Resolution::Favored(s) => ("favored", Some(s.word()), None),
                Resolution::KeptBoth { winner, loser_path } => {
                    ("kept_both", Some(winner.word()), Some(loser_path.escaped()))
                }
            };
            json!({"event": "conflict", "path": path.escaped(), "reason": reason,
                   "resolution": resolution, "kept": kept, "renamed_to": renamed_to})
        }
        Event::Error {
            path,
            side,
            message,
            exit_bit,
        } => json!({
            "event": "error", "path": path.map(|p| p.escaped()), "side": side.map(|s| s.word()),
            "message": message, "exit_bit": exit_bit,
        }),
        Event::Command { path, status, line } => json!({
            "event": "plan", "path": path.escaped(), "status": status.word(), "command": line,
        }),
        Event::Notice { message } => json!({"event": "notice", "message": message}),
        Event::Verify {
            path,
            status,
            side,
            detail,
            exit_bit,
        } => json!({"event": "verify", "path": path.escaped(), "status": status,
                    "side": side.map(|s| s.word()), "detail": detail, "exit_bit": exit_bit}),
        Event::Watching { message } => json!({"event": "watching", "message": message}),
        Event::Reconnecting {
            attempt,
            delay_s,
            message,
        } => json!({"event": "reconnecting", "attempt": attempt, "delay_s": delay_s,
                    "message": message}),
        Event::Summary(s) => {
            let mut v = serde_json::to_value(s).expect("summary serializes");
            v["event"] = json!("summary");
            v
        }
    }
}

impl Reporter for Json {
    fn event(&mut self, event: &Event<'_>) {
        let _ = writeln!(self.held, "{}", event_value(event));
        if !matches!(event, Event::Verify { .. }) || self.held.len() >= HOLD {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&self.held).and_then(|()| out.flush());
            self.held.clear();
        }
    }
}

impl Drop for Json {
    fn drop(&mut self) {
        let _ = std::io::stdout().lock().write_all(&self.held);
    }
}
