"""Alembic environment. The connection comes from store.migrate (or, from a checkout, alembic.ini's URL);
SQLite runs ALTERs in batch mode. Migrations are history and import no models; the models' metadata is given to
Alembic only for comparing (`alembic check`, autogenerate), so a drift between the two is found."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

from store.models import Base

config = context.config
# alembic.ini's logging, when Alembic runs from the command line (store.migrate passes a connection, not a file)
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    run(connection)
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.begin() as conn:
        run(conn)
