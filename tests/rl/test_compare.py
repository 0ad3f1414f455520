"""Multi-seed statistics and the comparison table, on run folders written by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hdqnn.rl.compare import bootstrap_ci, compare, compare_runs, format_table, iqm, learning_curves

SCIPY_STATS = pytest.importorskip("scipy.stats", reason="scipy gives the reference trimmed mean")


def _write_run(folder, algo, seed, evals, summary=True, tag=""):
    """A run folder as ``train`` leaves it: run.json, metrics.jsonl and summary.json."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"algo": algo, "env_id": "Pendulum-v1", "seed": seed, "tag": tag}))
    lines = [{"step": step, "wall_time": 0.0, "eval/mean_return": float(np.mean(r)), "eval/returns": r}
             for step, r in evals]
    lines.insert(1, {"step": 5, "wall_time": 0.0, "charts/SPS": 10.0})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if summary:
        (folder / "summary.json").write_text(json.dumps(
            {"sps": 100.0 + seed, "wall_seconds": 60.0, "circuit_executions": 1000 * seed, "grad_cosine_mean": 0.9}))


def test_iqm_matches_scipy_trimmed_mean():
    rng = np.random.default_rng(0)
    for n in (1, 3, 4, 10, 17):
        x = rng.normal(size=n)
        assert iqm(x) == pytest.approx(SCIPY_STATS.trim_mean(x, 0.25))


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_data():
    rng = np.random.default_rng(1)
    small, large = rng.normal(5.0, 1.0, 5), rng.normal(5.0, 1.0, 500)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < hi_s - lo_s
    assert bootstrap_ci([3.0]) == (3.0, 3.0)
    assert bootstrap_ci(small) == bootstrap_ci(small)  # seeded: the table is reproducible


def test_compare_groups_seeds_and_computes_statistics(tmp_path):
    for seed, final in ((1, -300.0), (2, -200.0), (3, -100.0)):
        _write_run(tmp_path / f"td3_{seed}", "td3", seed, [(10, [-900.0, -1000.0]), (20, [final, final])])
    _write_run(tmp_path / "q_1", "hdqnn-td3", 1, [(10, [-500.0]), (20, [-700.0])], summary=False)
    rows = compare_runs([tmp_path])
    assert [(r["label"], r["seeds"], r["finished"]) for r in rows] == [("hdqnn-td3", 1, 0), ("td3", 3, 3)]
    td3 = rows[1]
    assert td3["final_mean"] == pytest.approx(-200.0) and td3["steps"] == 20
    assert td3["final_ci"][0] < -200.0 < td3["final_ci"][1]
    assert td3["best_mean"] == pytest.approx(-200.0) and rows[0]["best_mean"] == pytest.approx(-500.0)
    assert td3["final_iqm"] == pytest.approx(-200.0)
    assert td3["sps"] == pytest.approx(102.0) and td3["circuit_executions"] == pytest.approx(2000.0)
    assert rows[0]["sps"] is None
    table = format_table(rows)
    assert "td3" in table and "3/3" in table and "-200.0 [" in table

    curves = learning_curves([tmp_path])["Pendulum-v1"]
    np.testing.assert_array_equal(curves["td3"]["steps"], [10, 20])
    np.testing.assert_allclose(curves["td3"]["mean"], [-950.0, -200.0])

    text, _ = compare([tmp_path], plot=tmp_path / "c.png", json_path=tmp_path / "c.json")
    assert (tmp_path / "c.png").stat().st_size > 0 and len(json.loads((tmp_path / "c.json").read_text())) == 2


def test_tags_split_configurations(tmp_path):
    _write_run(tmp_path / "a", "hdqnn-td3", 1, [(10, [-1.0])], tag="q4")
    _write_run(tmp_path / "b", "hdqnn-td3", 1, [(10, [-2.0])], tag="q8")
    assert [r["label"] for r in compare_runs([tmp_path / "a", tmp_path / "b"])] == ["q4", "q8"]


def test_compare_errors_name_the_folder(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        compare_runs([tmp_path / "missing"])
    with pytest.raises(ValueError, match="no runs"):
        compare_runs([tmp_path])
