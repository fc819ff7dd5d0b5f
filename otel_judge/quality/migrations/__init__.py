"""Alembic migrations of the evaluation store, run programmatically by :class:`QualityStore` at start."""
