//! Query fingerprints with pg_query: the same query with different constants (or
//! different `IN` list lengths) gets the same fingerprint and normalised text.
//! Parsing costs tens of microseconds, so each distinct text is parsed once and the
//! result kept in a bounded cache.

use std::sync::Arc;

use quick_cache::unsync::Cache;

/// What a statement is, for metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// SELECT (and VALUES, TABLE).
    Select,
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT…
    Transaction,
    /// CREATE, ALTER, DROP…
    Ddl,
    /// Anything else (SET, SHOW, COPY, EXPLAIN, unparseable text…).
    Other,
}

impl Command {
    /// The metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Select => "select",
            Command::Insert => "insert",
            Command::Update => "update",
            Command::Delete => "delete",
            Command::Transaction => "transaction",
            Command::Ddl => "ddl",
            Command::Other => "other",
        }
    }
}

/// A parsed query's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// pg_query's 64-bit fingerprint (a hash of the text when it does not parse).
    pub id: u64,
    /// Constants replaced by `$n`: safe to log and show.
    pub normalized: Arc<str>,
    /// The first statement's kind.
    pub command: Command,
    /// Tables read (SELECT … FROM, joins, subqueries).
    pub reads: Arc<[String]>,
    /// Tables written (INSERT, UPDATE, DELETE targets).
    pub writes: Arc<[String]>,
    /// Whether it parsed; text that does not parse is kept as one bucket per text.
    pub parsed: bool,
}

/// Fingerprints with a bounded cache of query shapes already parsed.
///
/// The cache is keyed by the text with its numeric and string literals masked
/// ([`shape`]), so `WHERE id = 1` and `WHERE id = 2`, sent with the simple protocol,
/// cost one parse between them, not one each.
///
/// ```
/// let mut f = strata_pg::fingerprint::Fingerprinter::new(1000);
/// let a = f.fingerprint("SELECT * FROM users WHERE id = 1");
/// let b = f.fingerprint("SELECT * FROM users WHERE id = 42");
/// assert_eq!(a.id, b.id);
/// assert_eq!(&*a.normalized, "SELECT * FROM users WHERE id = $1");
/// assert_eq!(&*a.reads, ["users".to_string()]);
/// ```
pub struct Fingerprinter {
    cache: Cache<Arc<str>, Arc<Fingerprint>>,
}

impl Fingerprinter {
    /// A fingerprinter remembering up to `capacity` distinct texts.
    pub fn new(capacity: usize) -> Self {
        Fingerprinter {
            cache: Cache::new(capacity.max(16)),
        }
    }

    /// The fingerprint of `sql`, parsing it only the first time its shape is seen.
    pub fn fingerprint(&mut self, sql: &str) -> Arc<Fingerprint> {
        let key = shape(sql);
        if let Some(f) = self.cache.get(key.as_ref()) {
            return f.clone();
        }
        let f = Arc::new(compute(sql));
        self.cache.insert(Arc::from(key.as_ref()), f.clone());
        f
    }
}

/// `sql` with each numeric literal replaced by `0` and each single-quoted string by
/// `''`: texts that differ only in constants share a shape, and pg_query gives them
/// the same fingerprint (it ignores constants). Digits inside identifiers (`t1`),
/// parameters (`$1`), double-quoted identifiers, comments and dollar-quoted bodies
/// are kept, so texts of different shapes never share one.
///
/// ```
/// use strata_pg::fingerprint::shape;
/// assert_eq!(shape("SELECT * FROM t1 WHERE id = 42 AND name = 'it''s'"),
///            "SELECT * FROM t1 WHERE id = 0 AND name = ''");
/// assert_eq!(shape("SELECT $1, \"a'b\", 1.5e3"), "SELECT $1, \"a'b\", 0");
/// ```
pub fn shape(sql: &str) -> std::borrow::Cow<'_, str> {
    let b = sql.as_bytes();
    // Nothing to mask: no copy.
    if !b.iter().any(|c| c.is_ascii_digit() || *c == b'\'') {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let mut copied = 0;
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                // A string constant, '' as an escaped quote (E'' backslashes too).
                let escapes = i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e');
                let mut j = i + 1;
                while j < b.len() {
                    if escapes && b[j] == b'\\' {
                        j += 2;
                        continue;
                    }
                    if b[j] == b'\'' {
                        if b.get(j + 1) == Some(&b'\'') {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                out.push_str(&sql[copied..i]);
                out.push_str("''");
                i = (j + 1).min(b.len());
                copied = i;
            }
            b'"' => {
                // A quoted identifier: kept as is.
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'$' if b.get(i + 1).is_some_and(|c| !c.is_ascii_digit()) => {
                // $tag$ … $tag$ (or $$ … $$): kept as is; anything else is a word.
                let tag_end = b[i + 1..].iter().position(|c| *c == b'$');
                match tag_end {
                    Some(n) if b[i + 1..i + 1 + n].iter().all(|c| word(*c) && *c != b'$') => {
                        let tag = &sql[i..i + n + 2];
                        let body = i + n + 2;
                        i = sql[body..]
                            .find(tag)
                            .map_or(b.len(), |p| body + p + tag.len());
                    }
                    _ => i += 1,
                }
            }
            c if c.is_ascii_digit() && (i == 0 || !word(b[i - 1])) => {
                // A number: digits, '.', an exponent.
                let mut j = i;
                while j < b.len()
                    && (b[j].is_ascii_alphanumeric()
                        || b[j] == b'.'
                        || b[j] == b'_'
                        || ((b[j] == b'+' || b[j] == b'-') && matches!(b[j - 1], b'e' | b'E')))
                {
                    j += 1;
                }
                out.push_str(&sql[copied..i]);
                out.push('0');
                i = j;
                copied = i;
            }
            c if word(c) => {
                // Skip the rest of a word, so digits inside it are kept.
                while i < b.len() && word(b[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    std::borrow::Cow::Owned(out)
}

fn compute(sql: &str) -> Fingerprint {
    let Ok(fp) = pg_query::fingerprint(sql) else {
        return unparsed(sql);
    };
    let normalized = pg_query::normalize(sql).unwrap_or_else(|_| sql.to_string());
    let (command, reads, writes) = match pg_query::parse(sql) {
        Ok(tree) => {
            let command = tree
                .statement_types()
                .first()
                .map_or(Command::Other, |t| command_of(t));
            let mut reads = tree.select_tables();
            reads.sort();
            reads.dedup();
            let mut writes = tree.dml_tables();
            writes.sort();
            writes.dedup();
            (command, reads, writes)
        }
        Err(_) => (Command::Other, Vec::new(), Vec::new()),
    };
    Fingerprint {
        id: fp.value,
        normalized: Arc::from(normalized.trim()),
        command,
        reads: reads.into(),
        writes: writes.into(),
        parsed: true,
    }
}

/// Text that does not parse (a syntax error the server will report, or a prefix of a
/// huge statement): one bucket per text, its digits masked so literals do not
/// multiply buckets or leak.
fn unparsed(sql: &str) -> Fingerprint {
    use std::hash::{Hash, Hasher};
    let masked: String = sql
        .chars()
        .take(2000)
        .map(|c| if c.is_ascii_digit() { '?' } else { c })
        .collect();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    masked.hash(&mut h);
    Fingerprint {
        id: h.finish(),
        normalized: Arc::from(masked.trim()),
        command: Command::Other,
        reads: Arc::from([]),
        writes: Arc::from([]),
        parsed: false,
    }
}

fn command_of(statement_type: &str) -> Command {
    match statement_type {
        "SelectStmt" => Command::Select,
        "InsertStmt" => Command::Insert,
        "UpdateStmt" => Command::Update,
        "DeleteStmt" => Command::Delete,
        "TransactionStmt" => Command::Transaction,
        t if t.starts_with("Create")
            || t.starts_with("Alter")
            || t.starts_with("Drop")
            || t == "IndexStmt"
            || t == "TruncateStmt"
            || t == "RenameStmt" =>
        {
            Command::Ddl
        }
        _ => Command::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_and_in_lists_share_a_fingerprint() {
        let mut f = Fingerprinter::new(100);
        let a = f.fingerprint("SELECT name FROM users WHERE id IN (1, 2, 3)");
        let b = f.fingerprint("select name from users where id in (7)");
        assert_eq!(a.id, b.id);
        assert_eq!(a.command, Command::Select);
        let c = f.fingerprint("SELECT name FROM users WHERE email = 'x'");
        assert_ne!(a.id, c.id);
        assert!(!c.normalized.contains("'x'"), "{}", c.normalized);
    }

    #[test]
    fn commands_and_tables() {
        let mut f = Fingerprinter::new(100);
        let u = f.fingerprint("UPDATE accounts SET balance = balance - 1 WHERE id = 3");
        assert_eq!(u.command, Command::Update);
        assert_eq!(&*u.writes, ["accounts".to_string()]);
        let j = f.fingerprint("SELECT * FROM orders o JOIN users u ON u.id = o.user_id");
        assert_eq!(&*j.reads, ["orders".to_string(), "users".to_string()]);
        assert_eq!(f.fingerprint("BEGIN").command, Command::Transaction);
        assert_eq!(
            f.fingerprint("CREATE TABLE t (a int)").command,
            Command::Ddl
        );
        assert_eq!(f.fingerprint("SET x = 1").command, Command::Other);
    }

    #[test]
    fn shapes_merge_constants_and_nothing_else() {
        let same = [
            (
                "SELECT a FROM t WHERE id = 1",
                "SELECT a FROM t WHERE id = 2000",
            ),
            ("SELECT 'x', 1.5", "SELECT 'it''s', 3e-7"),
            ("SELECT E'a\\'b'", "SELECT E'zz'"),
        ];
        for (a, b) in same {
            assert_eq!(shape(a), shape(b), "{a} | {b}");
        }
        let different = [
            ("SELECT * FROM t1", "SELECT * FROM t2"),
            ("SELECT $1", "SELECT $2"),
            ("SELECT \"c1\" FROM t", "SELECT \"c2\" FROM t"),
            ("SELECT 1 -- 1\n", "SELECT 1 -- 2\n"),
            ("SELECT $$1$$", "SELECT $$2$$"),
            ("SELECT $q$ 1 $q$", "SELECT $q$ 2 $q$"),
        ];
        for (a, b) in different {
            assert_ne!(shape(a), shape(b), "{a} | {b}");
        }
        // Unterminated things and odd bytes never panic.
        for s in [
            "'", "\"", "/*", "--", "$", "$a", "$a$", "E'\\", "1e", "é1'", "1.e+",
        ] {
            let _ = shape(s);
        }
    }

    #[test]
    fn one_parse_per_shape_same_answer_as_parsing_each() {
        let mut f = Fingerprinter::new(100);
        let a = f.fingerprint("SELECT abalance FROM pgbench_accounts WHERE aid = 17");
        let b = f.fingerprint("SELECT abalance FROM pgbench_accounts WHERE aid = 99");
        assert!(Arc::ptr_eq(&a, &b), "served from the shape cache");
        assert_eq!(
            *a,
            compute("SELECT abalance FROM pgbench_accounts WHERE aid = 99")
        );
    }

    #[test]
    fn text_that_does_not_parse_is_its_own_bucket_without_its_digits() {
        let mut f = Fingerprinter::new(100);
        let a = f.fingerprint("SELEC 1 FROM");
        let b = f.fingerprint("SELEC 2 FROM");
        assert!(!a.parsed);
        assert_eq!(a.id, b.id);
        assert!(!a.normalized.contains('1'));
    }
}
