//! The keyword check of the shared path: statements whose first keyword says they change the
//! session are refused before anything is sent. A check of the text, not a parser: what it
//! misses (a `set_config(..., false)` in a `SELECT`, a function that does such things) is
//! the caller's to keep off the shared path, and a transaction left open is caught after the
//! statement (the session is then taken out of sharing and rolled back).

/// The first keyword of `sql`, past white space and comments, upper-cased.
fn first_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, next)| next);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, next)| next);
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Why `sql` must not run on a shared session, when its first keyword says so.
pub(super) fn unshareable(sql: &str) -> Option<(String, &'static str)> {
    let keyword = first_keyword(sql);
    let why = match keyword.as_str() {
        "BEGIN" | "START" => "it opens a transaction the session's other users would run inside",
        "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE" => {
            "transaction control belongs to one session's user"
        }
        "SET" | "RESET" => "it changes a setting for every later user of the session",
        "DISCARD" | "DEALLOCATE" => "it drops the session's state, prepared statements included",
        "LISTEN" | "UNLISTEN" => "notifications arrive on a session of one's own",
        "COPY" => "COPY needs the session for its whole transfer",
        "DECLARE" | "FETCH" | "MOVE" | "CLOSE" => "cursors live in one session",
        "PREPARE" | "EXECUTE" => "SQL-level prepared statements live in one session",
        "LOCK" => "locks are held by one session's transaction",
        "LOAD" => "it loads a library into the session",
        _ => return None,
    };
    Some((keyword, why))
}

#[cfg(test)]
mod tests {
    use super::{first_keyword, unshareable};

    #[test]
    fn the_first_keyword_is_found_past_space_and_comments() {
        assert_eq!(first_keyword("  select 1"), "SELECT");
        assert_eq!(first_keyword("-- note\n  begin;"), "BEGIN");
        assert_eq!(first_keyword("/* a */ /* b */start transaction"), "START");
        assert_eq!(first_keyword("(SELECT 1)"), "");
        assert_eq!(first_keyword("-- only a comment"), "");
    }

    #[test]
    fn statements_that_change_the_session_are_refused() {
        for sql in [
            "BEGIN",
            "start transaction",
            "commit",
            "SET search_path = x",
            "reset all",
            "LISTEN ch",
            "COPY t FROM STDIN",
            "DECLARE c CURSOR FOR SELECT 1",
            "LOCK TABLE t",
            "/* x */ savepoint a",
        ] {
            assert!(unshareable(sql).is_some(), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "NOTIFY ch",
            "CALL p()",
            "SELECT set_config('a.b', '1', true)",
        ] {
            assert!(unshareable(sql).is_none(), "{sql}");
        }
    }
}
