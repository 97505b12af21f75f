//! The keyword check of the shared path: statements whose first keyword says they change the
//! session are refused before anything is sent. A check of the text, not a parser: what it
//! misses (a `set_config(..., false)` in a `SELECT`, a function that does such things) is
//! the caller's to keep off the shared path, and a transaction left open is caught after the
//! statement (the session is then taken out of sharing and rolled back).

/// The first word of `sql`, past white space and comments, as written.
fn first_keyword(sql: &str) -> &str {
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
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Why `sql` must not run on a shared session, when its first keyword says so. On every call
/// of the shared path, so it allocates nothing unless it refuses.
pub(super) fn unshareable(sql: &str) -> Option<(String, &'static str)> {
    let word = first_keyword(sql);
    // The longest keyword below has 10 letters.
    let mut upper = [0u8; 10];
    let letters = upper.get_mut(..word.len())?;
    letters.copy_from_slice(word.as_bytes());
    letters.make_ascii_uppercase();
    let keyword = std::str::from_utf8(letters).ok()?;
    let why = match keyword {
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
    Some((keyword.to_string(), why))
}

#[cfg(test)]
mod tests {
    use super::{first_keyword, unshareable};

    #[test]
    fn the_first_keyword_is_found_past_space_and_comments() {
        assert_eq!(first_keyword("  select 1"), "select");
        assert_eq!(first_keyword("-- note\n  begin;"), "begin");
        assert_eq!(first_keyword("/* a */ /* b */start transaction"), "start");
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
            "DEALLOCATE ALL",
        ] {
            assert!(unshareable(sql).is_some(), "{sql}");
        }
        assert_eq!(unshareable("begin").unwrap().0, "BEGIN");
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "NOTIFY ch",
            "CALL p()",
            "SELECT set_config('a.b', '1', true)",
            "SELECTIVELYLONGWORD",
            "",
        ] {
            assert!(unshareable(sql).is_none(), "{sql}");
        }
    }
}
