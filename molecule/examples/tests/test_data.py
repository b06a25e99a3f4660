"""The examples' data settings on their converged hosts: Diet Planner's plain-SQL sets (the guide restores with
psql) restore a deleted row through restore.yml; pg_stat_statements, which both guides query, is loaded and created."""

from __future__ import annotations

import pytest
from plain_sql import check_plain_set_restores, plain_config, psql
from seed_examples import example_vars, host, run_example


def test_dietplanner_plain_sql_set_restores_a_deleted_row():
    h = host("dietplanner")
    config = plain_config(h)
    assert config, "Diet Planner's backup configuration does not dump plain SQL"
    check_plain_set_restores(h, config, lambda playbook, *args: run_example("dietplanner", playbook, *args))


@pytest.mark.parametrize("example", ["dietplanner", "fairedge"])
def test_pg_stat_statements_is_loaded_and_created(example):
    h = host(example)
    extensions = example_vars(example)["postgresql_extensions"]
    assert {"name": "pg_stat_statements"}.items() <= extensions[0].items(), extensions
    database = extensions[0]["database"]
    assert "pg_stat_statements" in psql(h, "postgres", "SHOW shared_preload_libraries", 5432)
    assert psql(h, database, "SELECT extname FROM pg_extension WHERE extname = 'pg_stat_statements'", 5432)
    # Loaded, not only created: the view answers (it errors when the library is not preloaded).
    assert psql(h, database, "SELECT count(*) >= 0 FROM pg_stat_statements", 5432) == "t"
