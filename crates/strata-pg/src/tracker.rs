//! Follows one session's queries through the protocol and turns them into
//! [`QueryEvent`]s: what ran, for how long, how many rows, whether it failed.
//!
//! Requests and responses are matched in order, as the server answers them: a simple
//! `Query` ends at `ReadyForQuery`; an `Execute` ends at its `CommandComplete`,
//! `EmptyQueryResponse`, `PortalSuspended` or `ErrorResponse`; after an error the
//! server skips to the next `Sync`, and so does the tracker. In a pipeline each
//! query's time starts when the server could start it: when it was sent or when the
//! previous one finished, whichever is later.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::{command_rows, cstr, error_field};

/// One finished query.
#[derive(Debug, Clone)]
pub struct QueryEvent {
    /// The session it ran on (unique per proxy process).
    pub conn: u64,
    /// The SQL as sent (for extended queries, the prepared statement's text).
    pub sql: Arc<str>,
    /// Whether the text is only a prefix (the message was over the inspect limit).
    pub truncated: bool,
    /// Server time: from when the server could start it to its last response.
    pub duration: Duration,
    /// When its last response arrived (the proxy's clock): the insight thread
    /// dates the query by this, not by when it gets to the event.
    pub finished: Instant,
    /// Rows returned or affected, from the command tags.
    pub rows: u64,
    /// SQLSTATE when it failed.
    pub error: Option<String>,
    /// Transaction it ran in, as a per-session counter; None outside a transaction
    /// block.
    pub transaction: Option<u64>,
    /// Bind parameters as text, only when the tracker captures them
    /// (`log_parameters`): text values as sent (first 200 characters), binary ones
    /// as `\x` hex (first 64 bytes), `NULL`.
    pub params: Option<Arc<[String]>>,
}

/// A portal: its statement's text and, when captured, its parameters.
#[derive(Debug, Clone)]
struct Portal {
    sql: Arc<str>,
    truncated: bool,
    params: Option<Arc<[String]>>,
}

#[derive(Debug)]
enum Pending {
    /// A simple query: ends at ReadyForQuery; rows summed over its statements.
    Simple {
        sql: Arc<str>,
        truncated: bool,
        sent: Instant,
        rows: u64,
        error: Option<String>,
    },
    /// An Execute of a portal.
    Execute {
        sql: Arc<str>,
        truncated: bool,
        params: Option<Arc<[String]>>,
        sent: Instant,
    },
    /// A Sync: answered by ReadyForQuery.
    Sync,
}

/// The per-session state: statements and portals by name, what awaits an answer.
#[derive(Debug)]
pub struct Tracker {
    conn: u64,
    statements: HashMap<Box<[u8]>, (Arc<str>, bool)>,
    portals: HashMap<Box<[u8]>, Portal>,
    capture_params: bool,
    pending: VecDeque<Pending>,
    /// When the server finished the last thing it answered.
    last_done: Instant,
    /// After an error in an extended-query batch the server ignores messages until
    /// Sync.
    skipping: bool,
    in_transaction: bool,
    transaction_seq: u64,
    /// Backend process id and secret, from BackendKeyData.
    pub backend_key: Option<(u32, u32)>,
    /// Whether authentication succeeded.
    pub authenticated: bool,
    /// Whether the server sent a FATAL error (so the proxy need not add its own).
    pub server_fatal: bool,
}

/// Empty name: the unnamed statement or portal.
const UNNAMED: &[u8] = b"";

impl Tracker {
    /// A tracker for session `conn`; `capture_params` keeps Bind parameter values
    /// for the events (off unless the slow log is to show them).
    pub fn new(conn: u64, capture_params: bool) -> Self {
        Tracker {
            conn,
            capture_params,
            statements: HashMap::new(),
            portals: HashMap::new(),
            pending: VecDeque::new(),
            last_done: Instant::now(),
            skipping: false,
            in_transaction: false,
            transaction_seq: 0,
            backend_key: None,
            authenticated: false,
            server_fatal: false,
        }
    }

    /// Whether nothing is awaiting an answer (the session is idle).
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether the session is inside a transaction block.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// A message the client sent.
    pub fn client_message(&mut self, tag: u8, body: &[u8], complete: bool, now: Instant) {
        match tag {
            b'Q' => {
                let (sql, truncated) = text(body, complete);
                self.pending.push_back(Pending::Simple {
                    sql,
                    truncated,
                    sent: now,
                    rows: 0,
                    error: None,
                });
            }
            b'P' => {
                let Some((name, rest)) = cstr(body) else {
                    return;
                };
                let (sql, truncated) = text(rest, complete);
                self.statements.insert(name.into(), (sql, truncated));
            }
            b'B' => {
                let Some((portal, rest)) = cstr(body) else {
                    return;
                };
                let Some((stmt, rest)) = cstr(rest) else {
                    return;
                };
                if let Some((sql, truncated)) = self.statements.get(stmt) {
                    let params = (self.capture_params && complete)
                        .then(|| bind_params(rest))
                        .flatten();
                    let p = Portal {
                        sql: sql.clone(),
                        truncated: *truncated,
                        params,
                    };
                    self.portals.insert(portal.into(), p);
                }
            }
            b'E' => {
                let portal = cstr(body).map_or(UNNAMED, |(p, _)| p);
                let p = self.portals.get(portal).cloned().unwrap_or_else(|| Portal {
                    sql: Arc::from("<unknown portal>"),
                    truncated: true,
                    params: None,
                });
                self.pending.push_back(Pending::Execute {
                    sql: p.sql,
                    truncated: p.truncated,
                    params: p.params,
                    sent: now,
                });
            }
            b'S' => self.pending.push_back(Pending::Sync),
            b'C' => {
                // Close: 'S' statement or 'P' portal, then the name.
                if let Some((&kind, rest)) = body.split_first() {
                    if let Some((name, _)) = cstr(rest) {
                        match kind {
                            b'S' => drop(self.statements.remove(name)),
                            b'P' => drop(self.portals.remove(name)),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// A message the server sent; returns a finished query, if this finished one.
    pub fn server_message(&mut self, tag: u8, body: &[u8], now: Instant) -> Option<QueryEvent> {
        match tag {
            b'C' | b'I' | b's' => {
                let rows = if tag == b'C' { command_rows(body) } else { 0 };
                match self.pending.front_mut()? {
                    Pending::Simple { rows: r, .. } => {
                        *r += rows;
                        None
                    }
                    Pending::Execute { .. } => self.finish(rows, None, now),
                    Pending::Sync => None,
                }
            }
            b'E' => {
                let code = error_field(body, b'C')
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .unwrap_or_default();
                if error_field(body, b'S') == Some(b"FATAL") {
                    self.server_fatal = true;
                }
                match self.pending.front_mut() {
                    Some(Pending::Simple { error, .. }) => {
                        error.get_or_insert(code);
                        None
                    }
                    Some(Pending::Execute { .. }) => {
                        let ev = self.finish(0, Some(code), now);
                        // The server discards the rest of the batch up to Sync.
                        while matches!(self.pending.front(), Some(Pending::Execute { .. })) {
                            self.pending.pop_front();
                        }
                        self.skipping = true;
                        ev
                    }
                    // An error for a Parse/Bind/Describe, or with nothing pending.
                    _ => {
                        self.skipping = true;
                        None
                    }
                }
            }
            b'Z' => {
                let status = body.first().copied().unwrap_or(b'I');
                let was = self.in_transaction;
                self.in_transaction = status != b'I';
                if self.in_transaction && !was {
                    self.transaction_seq += 1;
                }
                self.skipping = false;
                self.portals.remove(UNNAMED);
                // A ReadyForQuery answers the oldest Simple or Sync; anything older
                // (Executes the server skipped) is dropped.
                while let Some(p) = self.pending.pop_front() {
                    match p {
                        Pending::Sync => {
                            self.last_done = now;
                            return None;
                        }
                        Pending::Simple {
                            sql,
                            truncated,
                            sent,
                            rows,
                            error,
                        } => {
                            let ev = self.event(sql, truncated, sent, rows, error, now, was);
                            self.last_done = now;
                            return Some(ev);
                        }
                        Pending::Execute { .. } => {}
                    }
                }
                None
            }
            b'K' if body.len() >= 8 => {
                self.backend_key = Some((
                    u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                    u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                ));
                None
            }
            b'R' => {
                if body.len() >= 4 && body[..4] == [0, 0, 0, 0] {
                    self.authenticated = true;
                }
                None
            }
            _ => None,
        }
    }

    fn finish(&mut self, rows: u64, error: Option<String>, now: Instant) -> Option<QueryEvent> {
        let Some(Pending::Execute {
            sql,
            truncated,
            params,
            sent,
        }) = self.pending.pop_front()
        else {
            return None;
        };
        let mut ev = self.event(sql, truncated, sent, rows, error, now, self.in_transaction);
        ev.params = params;
        self.last_done = now;
        Some(ev)
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        sql: Arc<str>,
        truncated: bool,
        sent: Instant,
        rows: u64,
        error: Option<String>,
        now: Instant,
        in_transaction: bool,
    ) -> QueryEvent {
        let start = sent.max(self.last_done);
        QueryEvent {
            conn: self.conn,
            sql,
            truncated,
            duration: now.saturating_duration_since(start),
            finished: now,
            rows,
            error,
            transaction: in_transaction.then_some(self.transaction_seq),
            params: None,
        }
    }

    /// Whether the server is discarding messages after an error (until Sync).
    pub fn skipping(&self) -> bool {
        self.skipping
    }
}

/// Bind's parameter values as text, from the body after the portal and statement
/// names: format codes, then values. None if the body is malformed.
fn bind_params(b: &[u8]) -> Option<Arc<[String]>> {
    let i16_at = |b: &[u8], at: usize| -> Option<i16> {
        Some(i16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
    };
    let nformats = usize::try_from(i16_at(b, 0)?).ok()?;
    let formats: Vec<i16> = (0..nformats)
        .map(|i| i16_at(b, 2 + 2 * i))
        .collect::<Option<_>>()?;
    let mut at = 2 + 2 * nformats;
    let nparams = usize::try_from(i16_at(b, at)?).ok()?;
    at += 2;
    let mut out = Vec::with_capacity(nparams.min(64));
    for i in 0..nparams {
        let len = i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        if len < 0 {
            out.push("NULL".to_string());
            continue;
        }
        let v = b.get(at..at + len as usize)?;
        at += len as usize;
        let binary = match formats.len() {
            0 => false,
            1 => formats[0] == 1,
            _ => formats.get(i) == Some(&1),
        };
        out.push(if binary {
            let hex: String = v.iter().take(64).map(|x| format!("{x:02x}")).collect();
            format!("\\x{hex}{}", if v.len() > 64 { "…" } else { "" })
        } else {
            let s = String::from_utf8_lossy(v);
            match s.char_indices().nth(200) {
                Some((cut, _)) => format!("{}…", &s[..cut]),
                None => s.into_owned(),
            }
        });
    }
    Some(out.into())
}

/// The SQL text of a Query or Parse body (NUL-terminated; lossy UTF-8).
fn text(body: &[u8], complete: bool) -> (Arc<str>, bool) {
    match cstr(body) {
        Some((sql, _)) => (Arc::from(String::from_utf8_lossy(sql)), !complete),
        // A prefix of an over-limit message has no terminator.
        None => (Arc::from(String::from_utf8_lossy(body)), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, base: Instant) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn simple_queries_end_at_ready_for_query_with_summed_rows() {
        let mut t = Tracker::new(1, false);
        let t0 = Instant::now();
        t.client_message(b'Q', b"SELECT 1; SELECT 2\0", true, at(0, t0));
        assert!(t.server_message(b'C', b"SELECT 1\0", at(3, t0)).is_none());
        assert!(t.server_message(b'C', b"SELECT 2\0", at(4, t0)).is_none());
        let ev = t.server_message(b'Z', b"I", at(5, t0)).unwrap();
        assert_eq!(&*ev.sql, "SELECT 1; SELECT 2");
        assert_eq!(ev.rows, 3);
        assert_eq!(ev.duration, Duration::from_millis(5));
        assert!(ev.error.is_none() && ev.transaction.is_none());
        assert!(t.is_idle());
    }

    #[test]
    fn pipelined_executes_are_timed_back_to_back_and_errors_skip_to_sync() {
        let mut t = Tracker::new(1, false);
        let t0 = Instant::now();
        t.client_message(b'P', b"s1\0SELECT * FROM a WHERE id = $1\0\0\0", true, t0);
        for _ in 0..3 {
            t.client_message(b'B', b"\0s1\0\0\0\0\0\0\0", true, t0);
            t.client_message(b'E', b"\0\0\0\0\0", true, t0);
        }
        t.client_message(b'S', b"", true, t0);
        let e1 = t.server_message(b'C', b"SELECT 1\0", at(10, t0)).unwrap();
        let e2 = t.server_message(b'C', b"SELECT 1\0", at(12, t0)).unwrap();
        assert_eq!(e1.duration, Duration::from_millis(10));
        assert_eq!(e2.duration, Duration::from_millis(2), "starts after e1");
        assert_eq!(&*e2.sql, "SELECT * FROM a WHERE id = $1");
        let e3 = t
            .server_message(b'E', b"SERROR\0C22P02\0Mbad\0\0", at(13, t0))
            .unwrap();
        assert_eq!(e3.error.as_deref(), Some("22P02"));
        assert!(t.server_message(b'Z', b"I", at(14, t0)).is_none());
        assert!(t.is_idle());

        // An error in the middle: later Executes of the batch never run.
        t.client_message(b'B', b"\0s1\0\0\0\0\0\0\0", true, t0);
        t.client_message(b'E', b"\0\0\0\0\0", true, t0);
        t.client_message(b'E', b"\0\0\0\0\0", true, t0);
        t.client_message(b'S', b"", true, t0);
        let e = t
            .server_message(b'E', b"SERROR\0C57014\0\0", at(20, t0))
            .unwrap();
        assert_eq!(e.error.as_deref(), Some("57014"));
        assert!(t.skipping());
        assert!(t.server_message(b'Z', b"I", at(21, t0)).is_none());
        assert!(t.is_idle() && !t.skipping());
    }

    #[test]
    fn transactions_are_numbered() {
        let mut t = Tracker::new(1, false);
        let t0 = Instant::now();
        t.client_message(b'Q', b"BEGIN\0", true, t0);
        let begin = t.server_message(b'Z', b"T", t0).unwrap();
        assert_eq!(begin.transaction, None, "BEGIN ran outside the block");
        t.client_message(b'Q', b"SELECT 1\0", true, t0);
        let q = t.server_message(b'Z', b"T", t0).unwrap();
        assert_eq!(q.transaction, Some(1));
        t.client_message(b'Q', b"COMMIT\0", true, t0);
        t.server_message(b'Z', b"I", t0).unwrap();
        t.client_message(b'Q', b"BEGIN\0", true, t0);
        t.server_message(b'Z', b"T", t0).unwrap();
        t.client_message(b'Q', b"SELECT 1\0", true, t0);
        assert_eq!(
            t.server_message(b'Z', b"T", t0).unwrap().transaction,
            Some(2)
        );
    }

    #[test]
    fn bind_parameters_are_kept_only_when_asked() {
        // Bind: portal "", statement "s1", 2 format codes (text, binary), 3 params
        // ("42", 0x0102 binary-format is per position, NULL).
        let mut bind = b"\0s1\0".to_vec();
        bind.extend_from_slice(&2i16.to_be_bytes());
        bind.extend_from_slice(&0i16.to_be_bytes());
        bind.extend_from_slice(&1i16.to_be_bytes());
        bind.extend_from_slice(&3i16.to_be_bytes());
        bind.extend_from_slice(&2i32.to_be_bytes());
        bind.extend_from_slice(b"42");
        bind.extend_from_slice(&2i32.to_be_bytes());
        bind.extend_from_slice(&[1, 2]);
        bind.extend_from_slice(&(-1i32).to_be_bytes());
        bind.extend_from_slice(&0i16.to_be_bytes());
        for capture in [true, false] {
            let mut t = Tracker::new(1, capture);
            let t0 = Instant::now();
            t.client_message(b'P', b"s1\0SELECT $1, $2, $3\0\0\0", true, t0);
            t.client_message(b'B', &bind, true, t0);
            t.client_message(b'E', b"\0\0\0\0\0", true, t0);
            let ev = t.server_message(b'C', b"SELECT 1\0", t0).unwrap();
            if capture {
                let p = ev.params.unwrap();
                assert_eq!(&*p, ["42", "\\x0102", "NULL"]);
            } else {
                assert!(ev.params.is_none());
            }
        }
        assert!(bind_params(&[0, 1]).is_none(), "truncated");
        assert!(bind_params(&[0xff, 0xff]).is_none(), "negative count");
    }

    #[test]
    fn garbage_never_panics() {
        let mut t = Tracker::new(1, false);
        let t0 = Instant::now();
        for tag in [b'Q', b'P', b'B', b'E', b'S', b'C', b'X'] {
            for body in [&b""[..], b"\0", b"x", b"S", b"Sx", b"\0\0"] {
                t.client_message(tag, body, true, t0);
            }
        }
        for tag in [b'C', b'E', b'Z', b'I', b's', b'K', b'R', b'S'] {
            for body in [&b""[..], b"\0", b"x", b"SFATAL", b"\0\0\0\0"] {
                let _ = t.server_message(tag, body, t0);
            }
        }
    }
}
