"""vllm-planner's results store (SQLAlchemy 2 + Alembic); rows never leave this package."""
