"""A stand-in for ``hdqnn train`` with the same run-folder contract, for fast sweep-runner tests.

It takes train's flag spellings, writes ``run.json`` at a fresh start, ``metrics.jsonl`` records,
an atomic ``checkpoint.pt`` (JSON here) every ``--checkpoint-freq`` steps and ``summary.json`` at
the end; ``--resume DIR`` continues from the checkpoint and truncates the metrics written after it,
as train does. Its "return" is a random walk whose generator state is in the checkpoint, so a resume
that lost or repeated a step would change the final value. Stub-only flags: ``--step-seconds``
(slow steps, so a test can kill a run mid-way) and ``--fail`` (``error``: exit 1 with a message;
``kill``: SIGKILL itself after its first checkpoint, every attempt).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

ALGOS = ("td3", "hdqnn-td3", "fc-td3", "rbg-td3")
LOG_EVERY = 10


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fake-train")
    p.add_argument("--algo", choices=ALGOS, default="hdqnn-td3")
    p.add_argument("--env-id", "--env", dest="env_id", default="Pendulum-v1")
    p.add_argument("--total-timesteps", "--steps", dest="total_timesteps", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--qubits", type=int, default=4)
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--hidden-sizes", type=int, nargs="+", default=[256, 256])
    p.add_argument("--tag", default="")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--checkpoint-freq", type=int, default=20)
    p.add_argument("--step-seconds", type=float, default=0.0)
    p.add_argument("--fail", choices=("", "error", "kill"), default="")
    p.add_argument("--out-dir", "--out", dest="out_dir", default="")
    p.add_argument("--resume", default=None)
    return p


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> None:
    args = build_parser().parse_args()
    if args.resume:
        out = Path(args.resume)
        checkpoint = json.loads((out / "checkpoint.pt").read_text())
        config = checkpoint["args"]
        step, value = checkpoint["step"], checkpoint["value"]
        rng = np.random.default_rng()
        rng.bit_generator.state = checkpoint["rng"]
        with open(out / "metrics.jsonl", "r+b") as f:
            f.truncate(checkpoint["metrics_bytes"])
    else:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in vars(args).items() if k != "resume"}
        (out / "run.json").write_text(json.dumps(config))
        (out / "metrics.jsonl").write_bytes(b"")
        step, value, rng = 0, 0.0, np.random.default_rng([config["seed"], ALGOS.index(config["algo"])])
    if config["fail"] == "error":
        sys.exit(f"ValueError: fake train cannot run {config['env_id']}")
    metrics = open(out / "metrics.jsonl", "ab")
    while step < config["total_timesteps"]:
        value += float(rng.normal())
        step += 1
        time.sleep(config["step_seconds"])
        if step % LOG_EVERY == 0:
            metrics.write((json.dumps({"step": step, "charts/episodic_return": value}) + "\n").encode())
        if step % config["checkpoint_freq"] == 0 or step == config["total_timesteps"]:
            metrics.flush()
            _write_atomic(out / "checkpoint.pt", json.dumps({
                "args": config, "step": step, "value": value, "rng": rng.bit_generator.state,
                "metrics_bytes": metrics.tell()}))
            if config["fail"] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
    metrics.write((json.dumps({"step": step, "eval/mean_return": value, "eval/returns": [value]}) + "\n").encode())
    metrics.close()
    _write_atomic(out / "summary.json", json.dumps({
        "algo": config["algo"], "env_id": config["env_id"], "seed": config["seed"], "final_eval": value,
        "best_eval": value, "total_timesteps": step, "wall_seconds": 0.0, "sps": 0.0, "circuit_executions": 0}))


if __name__ == "__main__":
    main()
