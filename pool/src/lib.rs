//! A PostgreSQL connection pool for tokio that stays correct under network faults.
