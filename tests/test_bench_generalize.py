"""bench/generalize_summary.py on hand-made run tables: per-seed drops averaged over levels, the
configuration table, the quantum-vs-classical Welch comparison, and its errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def summary(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the script imports its statistics from sb3_compare
    import generalize_summary

    return generalize_summary


def _write_run(root: Path, config: str, seed: int, unperturbed: float, drops: dict[str, list[float]]) -> None:
    rows = [{"perturbation": "none", "level": None, "mean_return": unperturbed, "drop": None}]
    for name, values in drops.items():
        rows += [{"perturbation": name, "level": i, "mean_return": unperturbed * (1 - d), "drop": d}
                 for i, d in enumerate(values)]
    folder = root / config / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "generalization.json").write_text(json.dumps({"result": {}, "rows": rows}))


@pytest.fixture
def runs(tmp_path):
    # quantum: all-levels drop 0.2 and 0.3 per seed; classical: 0.0 and 0.1
    _write_run(tmp_path, "hdqnn-td3", 1, 100.0, {"mass": [0.1, 0.3], "gain": [0.2]})
    _write_run(tmp_path, "hdqnn-td3", 2, 120.0, {"mass": [0.2, 0.4], "gain": [0.3]})
    _write_run(tmp_path, "td3", 1, 200.0, {"mass": [0.0, 0.0], "gain": [0.0]})
    _write_run(tmp_path, "td3", 2, 220.0, {"mass": [0.1, 0.1], "gain": [0.1]})
    return tmp_path


def test_drops_average_levels_then_seeds(summary, runs):
    configs = summary.read_configs([runs])
    assert sorted(configs) == ["hdqnn-td3", "td3"]
    assert [summary.all_levels_drop(s) for s in configs["hdqnn-td3"]] == pytest.approx([0.2, 0.3])
    table = summary.config_table(configs)
    q_line = next(line for line in table.splitlines() if line.startswith("| hdqnn-td3 |"))
    cells = [c.strip() for c in q_line.strip("|").split("|")]
    lo, hi = summary.t_interval([100.0, 120.0])
    assert cells[:3] == ["hdqnn-td3", "2", f"110.0 [{lo:.1f}, {hi:.1f}]"]
    assert cells[3].startswith("25.0 [") and cells[3].endswith("%")
    assert cells[4:] == ["25.0%", "25.0%"]  # mass: seed means 0.2, 0.3; gain: 0.2, 0.3
    assert "| config | seeds | unperturbed return | mean drop, all levels | mass | gain |" in table


def test_pairs_compare_quantum_with_classical(summary, runs):
    configs = summary.read_configs([runs])
    line = summary.pair_table(configs, [("hdqnn-td3", "td3")]).splitlines()[-1]
    drop = summary.welch_test([20.0, 30.0], [0.0, 10.0])
    ret = summary.welch_test([100.0, 120.0], [200.0, 220.0])
    assert f"{ret.difference:.1f} [{ret.ci[0]:.1f}, {ret.ci[1]:.1f}], p = {ret.p_value:.2f}" in line
    assert f"{drop.difference:.1f} pp [{drop.ci[0]:.1f}, {drop.ci[1]:.1f}], p = {drop.p_value:.2f}" in line
    assert drop.difference == pytest.approx(20.0)


def test_cli_errors_name_the_problem(summary, runs, tmp_path_factory, capsys):
    with pytest.raises(SystemExit, match="no generalization tables for 'sac'"):
        summary.main([str(runs), "--pairs", "hdqnn-td3:sac"])
    with pytest.raises(SystemExit, match="run `hdqnn generalize`"):
        summary.main([str(tmp_path_factory.mktemp("empty"))])
    with pytest.raises(SystemExit):
        summary.main([str(runs), "--pairs", "hdqnn-td3"])
    assert "QUANTUM:CLASSICAL" in capsys.readouterr().err
    assert summary.main([str(runs), "--pairs", "hdqnn-td3:td3"]) == 0
    assert "| hdqnn-td3 | td3 |" in capsys.readouterr().out


def test_plot_is_written(summary, runs, tmp_path):
    out = tmp_path / "drops.png"
    assert summary.main([str(runs), "--plot", str(out)]) == 0
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
