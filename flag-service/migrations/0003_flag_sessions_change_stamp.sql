-- Each replica keeps a mirror of the recent flag sessions in memory (src/mirror.rs) and, before
-- it answers from it, reads the rows written since its last read. "Since" is a PostgreSQL
-- snapshot: a row version belongs to the next read when the transaction that wrote it is not
-- visible in the snapshot of the previous one. The stamp is the writing transaction's id, set
-- by a trigger so that every writer (flag-service, an operator's UPDATE, a bulk load) stamps
-- its rows. Rows written before this migration keep NULL: the first full load reads them.
ALTER TABLE flag.flag_sessions ADD COLUMN changed_in xid8;

CREATE FUNCTION flag.stamp_flag_session_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_in := pg_current_xact_id();
    RETURN NEW;
END
$$;

CREATE TRIGGER flag_sessions_stamp_change
    BEFORE INSERT OR UPDATE ON flag.flag_sessions
    FOR EACH ROW EXECUTE FUNCTION flag.stamp_flag_session_change();

-- The mirror's read of what changed: the stamps at or after the previous snapshot's xmin, a
-- short range at the end of this index.
CREATE INDEX flag_sessions_by_change ON flag.flag_sessions (changed_in);
