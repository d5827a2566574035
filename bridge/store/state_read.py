"""One source's polling state, read once per poll with the least machinery a read can have.

Every poll of every source starts with this read, thousands per cycle. Through SQLAlchemy's
Connection (checkout, BEGIN through the engine's listener, statement cache lookup, result
objects) it cost ~0.8 ms of CPU in the daemon, where polls run tens of milliseconds apart and find
the caches cold, against ~0.3 ms for the same SELECT on the pool's DBAPI connection (issue 12's
warm poll, README "Poll cycle"). So the statement is compiled once for the engine's dialect and run
on a raw pooled connection; each column's own result processor still converts the value (the
UTC datetimes of schema.UTCDateTime), and a database error is raised as SQLAlchemy's own, as the
Connection path raised it.

A single SELECT needs no explicit transaction: SQLite (isolation_level None, store/db.py) runs it
in its own implicit read transaction; on PostgreSQL the pool's reset-on-return ends the one the
driver opened.
"""

from __future__ import annotations

from sqlalchemy import Engine, bindparam, exc, select

from bridge.store import schema

S = schema.sources

COLUMNS = (S.c.url, S.c.initialised, S.c.etag, S.c.last_modified, S.c.consecutive_failures, S.c.next_poll_at,
           S.c.last_items_seen, S.c.last_outcome)
_STATEMENT = select(*COLUMNS).where(S.c.name == bindparam("state_name"))


class StateReader:
    """Reads one sources row's COLUMNS by name: a tuple in COLUMNS' order, or None."""

    def __init__(self, engine: Engine):
        self.engine = engine
        dialect = engine.dialect
        compiled = _STATEMENT.compile(dialect=dialect)
        self._sql = str(compiled)
        self._positional = bool(dialect.positional)
        self._processors = [(index, processor) for index, column in enumerate(COLUMNS)
                            if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None))]

    def read(self, name: str) -> tuple | None:
        params = (name,) if self._positional else {"state_name": name}
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(self._sql, params)
                row = cursor.fetchone()
            finally:
                cursor.close()
        except self.engine.dialect.loaded_dbapi.Error as error:
            raise exc.DBAPIError.instance(self._sql, params, error, self.engine.dialect.loaded_dbapi.Error) from error
        finally:
            connection.close()  # back to the pool, which resets (rolls back) what the driver began
        if row is None:
            return None
        values = list(row)
        for index, processor in self._processors:
            values[index] = processor(values[index])
        return tuple(values)
