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

/// Fingerprints with a bounded cache of texts already parsed.
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

    /// The fingerprint of `sql`, parsing it only the first time this text is seen.
    pub fn fingerprint(&mut self, sql: &str) -> Arc<Fingerprint> {
        if let Some(f) = self.cache.get(sql) {
            return f.clone();
        }
        let f = Arc::new(compute(sql));
        self.cache.insert(Arc::from(sql), f.clone());
        f
    }
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
    fn text_that_does_not_parse_is_its_own_bucket_without_its_digits() {
        let mut f = Fingerprinter::new(100);
        let a = f.fingerprint("SELEC 1 FROM");
        let b = f.fingerprint("SELEC 2 FROM");
        assert!(!a.parsed);
        assert_eq!(a.id, b.id);
        assert!(!a.normalized.contains('1'));
    }
}
