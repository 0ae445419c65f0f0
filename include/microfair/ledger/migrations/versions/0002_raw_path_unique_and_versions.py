"""raw path unique; observation time and versions of an acquisition

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 20:40:00

* ``datasets.raw_path`` becomes unique (``ux_datasets_raw_path``): two datasets can no
  longer claim one raw copy. Where an older ledger has duplicates (the same raw file
  reached from two microscopes), the earliest dataset keeps the path; the others lose
  it and say so in ``reason`` (nothing is deleted on disk).
* ``observed_at``: when collect's scan first saw the current size and mtime.
* ``version`` / ``superseded_by``: a landing file changed after collection is a new
  version of the same acquisition; the earlier one is marked ``superseded``.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    dupes = conn.execute(sa.text(
        "SELECT raw_path, MIN(id) FROM datasets WHERE raw_path IS NOT NULL GROUP BY raw_path HAVING COUNT(*) > 1"
    )).all()
    for raw_path, keep in dupes:
        conn.execute(sa.text(
            "UPDATE datasets SET raw_path = NULL, reason = COALESCE(reason || '; ', '') || :why "
            "WHERE raw_path = :p AND id != :keep"
        ), {"p": raw_path, "keep": keep, "why": f"raw copy {raw_path} belongs to dataset id {keep} (0002)"})
    with op.batch_alter_table('datasets') as batch:
        batch.add_column(sa.Column('observed_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='1'))
        batch.add_column(sa.Column('superseded_by', sa.String(length=64), nullable=True))
        batch.create_index('ux_datasets_raw_path', ['raw_path'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('datasets') as batch:
        batch.drop_index('ux_datasets_raw_path')
        batch.drop_column('superseded_by')
        batch.drop_column('version')
        batch.drop_column('observed_at')
