"""PostgreSQL: what keeps every decision's agent and config version in existence, checked per statement.

A foreign key checks each inserted row on its own: two look-ups (agent, version) with a row lock per decision,
which made a COPY of 100,000 decisions take half as long again. Instead, one trigger per statement checks the
statement's distinct (agent, version) pairs at once, from the statement's new rows (a transition table), and
locks each version as a foreign key locks its row (``FOR KEY SHARE``). It checks more than the two keys did: the
version must be one of that agent's. An update that changes either column is checked the same way, row by row.
Versions and agents that decisions refer to cannot be deleted (or their ids changed): a trigger on each refuses,
as the keys' ``NO ACTION`` did. All raise ``foreign_key_violation`` (Django's ``IntegrityError``), naming what is
missing.

Races are closed as with a key: an insert holds its versions' ``KEY SHARE`` locks until its commit, so a delete
of one of them waits and then sees the new decisions; a delete that comes first holds the version's row lock, so
the insert's lock waits and then finds the row gone and refuses.

Each partition carries the insert check too. A statement's triggers are those of the table it names: an insert
through the decision table fires the decision table's check, and a batch's ``COPY`` written straight into its
week's partition (``auditlog.services``) fires the partition's. PostgreSQL writes a ``COPY`` row by row into a
partitioned table that has a statement trigger with a transition table, and many rows at a time into a plain
table (its ``copyfrom.c``): a fifth of the database's time for a batch.

Used by migrations auditlog 0009 and 0012; ``auditlog.partitions`` gives every partition it makes the check
(``partition_check``) and ``table_convert`` keeps the triggers when it rebuilds the table. SQLite (the embedded
mode) keeps its foreign keys.
"""

from django.db.backends.utils import CursorWrapper

DECISION = "auditlog_decision"
# (referenced table, the decision's column that refers to it)
REFERENCED = (("thresholds_agent", "agent_id"), ("thresholds_configversion", "config_version_id"))

NO_SUCH_VERSION = "that agent has no such version"

INSERT_CHECK = f"""
CREATE OR REPLACE FUNCTION {DECISION}_references_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing record;
BEGIN
    -- Each new pair's version row, locked as a foreign key locks it; a pair whose version is gone, or is
    -- another agent's, is missing.
    SELECT p.agent_id, p.config_version_id INTO missing
      FROM (SELECT DISTINCT agent_id, config_version_id FROM new_rows) p
      LEFT JOIN LATERAL (
          SELECT v.id FROM thresholds_configversion v
           WHERE v.id = p.config_version_id AND v.agent_id = p.agent_id
             FOR KEY SHARE
      ) found ON true
     WHERE found.id IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert on table "{DECISION}" refers to config version % of agent %: {NO_SUCH_VERSION}',
            missing.config_version_id, missing.agent_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$
"""

UPDATE_CHECK = f"""
CREATE OR REPLACE FUNCTION {DECISION}_references_check_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM thresholds_configversion v
      WHERE v.id = NEW.config_version_id AND v.agent_id = NEW.agent_id
        FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'update on table "{DECISION}" refers to config version % of agent %: {NO_SUCH_VERSION}',
            NEW.config_version_id, NEW.agent_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$
"""

KEPT_CHECK = f"""
CREATE OR REPLACE FUNCTION {DECISION}_referenced_kept() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    referred boolean;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
        RETURN NEW;
    END IF;
    -- TG_ARGV[0]: the decision's column that refers to this table.
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM {DECISION} WHERE %I = $1)', TG_ARGV[0])
        INTO referred USING OLD.id;
    IF referred THEN
        RAISE EXCEPTION '% on table "%" would leave decisions without their row: %',
            lower(TG_OP), TG_TABLE_NAME, format('"{DECISION}".%s = %s is still referred to', TG_ARGV[0], OLD.id)
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$
"""


FUNCTIONS = {
    f"{DECISION}_references_check": INSERT_CHECK,
    f"{DECISION}_references_check_changed": UPDATE_CHECK,
    f"{DECISION}_referenced_kept": KEPT_CHECK,
}


def partition_names(cursor: CursorWrapper) -> list[str]:
    """The decision table's partitions (weeks and the default); none when it is not partitioned."""
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
        [DECISION],
    )
    return [row[0] for row in cursor.fetchall()]


def _insert_check(table: str) -> str:
    return (
        f'CREATE TRIGGER {DECISION}_references AFTER INSERT ON "{table}" '
        f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {DECISION}_references_check()"
    )


def partition_check(cursor: CursorWrapper, partition: str) -> None:
    """Give ``partition`` the insert check, for the statements that name it (a batch's ``COPY``). Nothing before
    migration 0009 made the check's function: a partition made then gets it from migration 0012."""
    cursor.execute("SELECT to_regproc(%s) IS NOT NULL", [f"{DECISION}_references_check"])
    if cursor.fetchone()[0]:
        cursor.execute(f'DROP TRIGGER IF EXISTS {DECISION}_references ON "{partition}"')
        cursor.execute(_insert_check(partition))


def _drop_triggers(cursor: CursorWrapper) -> None:
    for partition in partition_names(cursor):
        cursor.execute(f'DROP TRIGGER IF EXISTS {DECISION}_references ON "{partition}"')
    cursor.execute(f"DROP TRIGGER IF EXISTS {DECISION}_references ON {DECISION}")
    cursor.execute(f"DROP TRIGGER IF EXISTS {DECISION}_references_changed ON {DECISION}")
    for table, _column in REFERENCED:
        cursor.execute(f"DROP TRIGGER IF EXISTS {DECISION}_kept ON {table}")


def references_check_per_statement(cursor: CursorWrapper) -> None:
    """Replace the decision table's foreign keys with the triggers above (idempotent)."""
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending key checks on a table being altered
    cursor.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'f' AND conparentid = 0",
        [DECISION],
    )
    for (name,) in cursor.fetchall():
        cursor.execute(f'ALTER TABLE {DECISION} DROP CONSTRAINT "{name}"')
    for definition in FUNCTIONS.values():
        cursor.execute(definition)
    _drop_triggers(cursor)
    cursor.execute(_insert_check(DECISION))
    for partition in partition_names(cursor):
        cursor.execute(_insert_check(partition))
    # An update that changes neither column (a response, a claim) runs nothing: the condition is checked first.
    cursor.execute(
        f"CREATE TRIGGER {DECISION}_references_changed AFTER UPDATE OF agent_id, config_version_id ON {DECISION} "
        "FOR EACH ROW WHEN (OLD.agent_id IS DISTINCT FROM NEW.agent_id "
        "OR OLD.config_version_id IS DISTINCT FROM NEW.config_version_id) "
        f"EXECUTE FUNCTION {DECISION}_references_check_changed()"
    )
    for table, column in REFERENCED:
        cursor.execute(
            f"CREATE TRIGGER {DECISION}_kept BEFORE DELETE OR UPDATE OF id ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {DECISION}_referenced_kept('{column}')"
        )


def references_check_per_row(cursor: CursorWrapper) -> None:
    """Undo: the triggers go and the foreign keys come back (as Django named and made them)."""
    _drop_triggers(cursor)
    for name in FUNCTIONS:
        cursor.execute(f"DROP FUNCTION IF EXISTS {name}()")
    for table, column in REFERENCED:
        cursor.execute(
            f"ALTER TABLE {DECISION} ADD CONSTRAINT {DECISION}_{column}_fk_{table} FOREIGN KEY ({column}) "
            f"REFERENCES {table} (id) DEFERRABLE INITIALLY DEFERRED"
        )
