"""A re-embed run: the plan, its steps and strategies, the data pass, staging, and the
offline script. Calls the store and target layers and the embedders; never Alembic."""
