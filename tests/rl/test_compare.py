"""Multi-seed statistics and the comparison table, on run folders written by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hdqnn.cli import main
from hdqnn.rl.compare import bootstrap_ci, compare, compare_runs, format_table, iqm, learning_curves

SCIPY_STATS = pytest.importorskip("scipy.stats", reason="scipy gives the reference trimmed mean")


def _write_run(folder, algo, seed, evals, summary=True, tag="", **args):
    """A run folder as ``train`` leaves it: run.json, metrics.jsonl and summary.json."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"algo": algo, "env_id": "Pendulum-v1", "seed": seed, "tag": tag,
                                                 **args}))
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


def test_runs_of_different_budgets_or_repeated_seeds_are_not_pooled(tmp_path):
    """The finding: five runs of seed 1, 300 to 13,000 steps, were one row "seeds 5/5, steps 300"."""
    for name, steps in (("a", 300), ("b", 1_000), ("c", 13_000), ("d", 13_000), ("e", 13_000)):
        _write_run(tmp_path / name, "hdqnn-td3", 1 if name != "e" else 2, [(steps, [-float(steps)])],
                   total_timesteps=steps, out_dir=name, threads=1)
    rows = compare_runs([tmp_path])
    assert [(r["steps"], r["seeds"], r["runs"]) for r in rows] == [
        (300, 1, [str(tmp_path / "a")]), (1_000, 1, [str(tmp_path / "b")]),
        (13_000, 2, [str(tmp_path / "c"), str(tmp_path / "e")])]
    assert rows[2]["repeats"] == [str(tmp_path / "d")]
    assert rows[2]["final_mean"] == pytest.approx(-13_000.0)
    text = format_table(rows)
    assert "warning: hdqnn-td3 on Pendulum-v1: the runs' last evaluations are at different steps" in text
    assert f"300 steps: {tmp_path / 'a'}; 1,000 steps: {tmp_path / 'b'}; 13,000 steps: {tmp_path / 'c'}" in text
    assert f"{tmp_path / 'c'}, {tmp_path / 'd'} repeat seed 1" in text and f"only {tmp_path / 'c'} is counted" in text
    curves = learning_curves([tmp_path])["Pendulum-v1"]
    assert sorted(curves) == ["hdqnn-td3 @ 1,000 steps", "hdqnn-td3 @ 13,000 steps", "hdqnn-td3 @ 300 steps"]
    assert curves["hdqnn-td3 @ 13,000 steps"]["n"] == 2


def test_runs_of_different_configurations_get_their_own_rows(tmp_path):
    for name, seed, qubits, grad in (("a", 1, 4, "qtdnn"), ("b", 2, 4, "qtdnn"), ("c", 1, 8, "adjoint")):
        _write_run(tmp_path / name, "hdqnn-td3", seed, [(10, [-float(qubits)])], qubits=qubits, grad=grad)
    rows = compare_runs([tmp_path])
    assert [(r["label"], r["seeds"], r["final_mean"]) for r in rows] == [
        ("hdqnn-td3 (grad=adjoint, qubits=8)", 1, -8.0), ("hdqnn-td3 (grad=qtdnn, qubits=4)", 2, -4.0)]
    assert rows[0]["warnings"] == rows[1]["warnings"] == [
        f"hdqnn-td3 on Pendulum-v1: the runs differ in grad, qubits, so each configuration has its own row: "
        f"hdqnn-td3 (grad=qtdnn, qubits=4): {tmp_path / 'a'}, {tmp_path / 'b'}; "
        f"hdqnn-td3 (grad=adjoint, qubits=8): {tmp_path / 'c'}"]
    assert format_table(rows).count("warning: ") == 1


def test_compare_plot_goes_to_the_current_folder_or_out(tmp_path, monkeypatch, capsys):
    run = tmp_path / "runs" / "a"
    _write_run(run, "td3", 1, [(10, [-1.0]), (20, [-0.5])])
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(run)]) == 0
    assert (tmp_path / "compare.png").stat().st_size > 0 and not (run / "compare.png").exists()
    assert main(["compare", str(run), "--out", "plots"]) == 0
    assert (tmp_path / "plots" / "compare.png").stat().st_size > 0
    assert "curves: plots/compare.png" in capsys.readouterr().out


def test_damaged_log_lines_are_skipped_with_a_warning(tmp_path):
    """A log garbled in the middle (e.g. NUL bytes) no longer stops the whole comparison."""
    _write_run(tmp_path / "a", "td3", 1, [(10, [-3.0]), (20, [-1.0])])
    metrics = tmp_path / "a" / "metrics.jsonl"
    lines = metrics.read_bytes().split(b"\n")
    metrics.write_bytes(b"\n".join([lines[0], b"\0" * 9 + lines[1], *lines[2:]]))
    (row,) = compare_runs([tmp_path])
    assert row["final_mean"] == pytest.approx(-1.0)
    assert row["warnings"] == [
        f"{metrics}: 1 damaged lines skipped (line 2); resuming an unfinished run repairs its log"]
