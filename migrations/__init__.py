"""Alembic migrations of the results store: history, importing no models. Shipped inside the installed package."""
