-- Each replica keeps a mirror of the recent flag sessions in memory (src/mirror.rs) and, before
-- it answers from it, reads the rows written since its last read. "Since" is a PostgreSQL
-- snapshot: a row version belongs to the next read when the transaction that wrote it is not
-- visible in the snapshot of the previous one. The stamp is the writing transaction's id.
--
-- Set without a trigger, since the schema keeps to the rules that let it distribute by tenant
-- (docs/design.md: no triggers): the column default stamps every insert (flag-service's, a bulk
-- load's, an operator's), and flag-service's one UPDATE (disable) sets it itself. An operator
-- who updates rows by hand sets `changed_in = pg_current_xact_id()` as well, or the replicas'
-- mirrors miss the change until they restart. Rows written before this migration keep NULL:
-- the first full load reads them.
ALTER TABLE flag.flag_sessions ADD COLUMN changed_in xid8;
ALTER TABLE flag.flag_sessions ALTER COLUMN changed_in SET DEFAULT pg_current_xact_id();

-- The mirror's read of what changed: the stamps at or after the previous snapshot's xmin, a
-- short range at the end of this index.
CREATE INDEX flag_sessions_by_change ON flag.flag_sessions (changed_in);
