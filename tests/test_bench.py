"""The benchmark suite's own code: the GPU benchmark's training step runs on the CPU with a tiny
network (the same code that measures ResNet-34 on a GPU), and the runner writes its table."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import __main__ as runner
from bench import bench_check, bench_gpu
from bench.report import Row, markdown, text

TINY = str(Path(__file__).parent / "fixtures" / "tiny.arch")


@pytest.mark.parametrize("bf16,channels_last", [(False, False), (True, True)])
def test_the_gpu_benchmark_step_runs_on_the_cpu(bf16, channels_last):
    r = bench_gpu.throughput(spec=TINY, device="cpu", image_size=16, cache_size=20, batch=4,
                             steps=5, warmup=1, bf16=bf16, channels_last=channels_last)
    assert r["resident"]  # the whole uint8 set lives on the device, as on a GPU
    assert r["images_per_s"] > 0 and 0 < r["data_wait_fraction"] < 1
    assert math.isfinite(r["final_loss"])


def test_without_cuda_the_gpu_figures_say_not_measured():
    import torch

    if torch.cuda.is_available():  # pragma: no cover - a GPU machine measures instead
        pytest.skip("CUDA present")
    result = bench_gpu.run(quick=True)
    assert result == {"measured": False, "reason": "no CUDA device on this machine: not measured"}
    (row,) = bench_gpu.rows(result)
    assert row.archc == "not measured" and row.holds is None


def test_gpu_rows_report_speedups_against_the_fp32_baseline():
    result = {"measured": True, "device": "X", "batch": 8, "steps": 2, "rows": {
        "baseline fp32": {"images_per_s": 100.0, "data_wait_fraction": 0.5, "speedup": 1.0},
        "bf16": {"images_per_s": 250.0, "data_wait_fraction": 0.02, "speedup": 2.5},
    }}
    rows = bench_gpu.rows(result)
    assert [r.ratio for r in rows] == [1.0, 2.5]
    assert rows[1].archc == "250 img/s" and rows[1].baseline == "100 img/s"
    assert rows[1].note == "data wait 2.0% of step time"


def test_tables_render_every_row_and_escape_pipes():
    rows = [Row("a", "x | y", "1 s", "2 s", 0.5, "≤ 1", True),
            Row("b", "z", "3 s", "1 s", 3.0, "≤ 1", False, "slow"),
            Row("gpu", "w", "not measured", "", None, "", None, "no CUDA")]
    md = markdown(rows, {"cpus": 2, "gpu": None, "python": "3.11.7", "torch": "2.14.1"},
                  "python -m bench")
    assert "Machine: 2 CPUs, no GPU; Python 3.11.7, torch 2.14.1" in md
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(rows)
    assert "| a | x \\| y | 1 s | 2 s | 0.5 | ≤ 1 | yes |  |" in lines
    assert "| b | z | 3 s | 1 s | 3 | ≤ 1 | NO | slow |" in lines
    assert text(rows).splitlines()[3].split()[:3] == ["gpu", "w", "not"]


def test_the_runner_writes_json_and_markdown(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "__file__", str(tmp_path / "__main__.py"))
    assert runner.main(["gpu", "--quick"]) == 0
    data = json.loads((tmp_path / "results" / "results.json").read_text())
    assert data["command"] == "python -m bench gpu --quick" and "gpu" in data
    md = (tmp_path / "results" / "results.md").read_text()
    assert "ResNet-34 training images/s" in md
    assert runner.main(["nonsense"]) == 2
    assert "unknown suite nonsense" in capsys.readouterr().out


def test_the_check_benchmark_takes_one_member_of_every_zoo_family():
    from archc.zoo import load_zoo

    members = bench_check.zoo_members()
    assert set(members) == {entry.spec.stem for entry in load_zoo().values()}
    # the first entry of each spec in specs/zoo.yaml, as `archc check` arguments
    assert members["vgg"] == ["specs/vgg.arch", "--variant", "A"]
    assert members["mobilenet"] == ["specs/mobilenet.arch", "--network", "mobilenet_v2"]
    assert members["squeezenet"] == ["specs/squeezenet.arch", "--set", "version=v1_0"]


@pytest.mark.parametrize("efficientnet_ratio,holds", [(0.16, False), (0.14, True)])
def test_the_zoo_check_row_shows_the_slowest_family_and_holds_only_if_every_one_does(
        efficientnet_ratio, holds):
    def family(spec, ratio):
        return {"command": f"archc check specs/{spec}.arch", "check_s": ratio * 2.0,
                "ratio": ratio, "median_ratio": ratio, "ok": ratio <= 0.15}

    a = {"import_torch_s": 2.0, "zoo": {"vgg": family("vgg", 0.1),
                                        "efficientnet": family("efficientnet", efficientnet_ratio),
                                        "alexnet": family("alexnet", 0.12)}}
    (row,) = bench_check._zoo_row(a)
    assert "3 zoo families" in row.what and "specs/efficientnet.arch" in row.what
    assert row.ratio == efficientnet_ratio and row.holds is holds


def test_the_zoo_check_is_judged_with_and_without_the_parse_cache():
    def figures(ratio):
        return {"check_s": ratio * 2.0, "ratio": ratio, "median_ratio": ratio, "ok": ratio <= 0.15}

    def family(spec, cached, parsing):
        return {"command": f"archc check specs/{spec}.arch", **figures(cached),
                "parsing": figures(parsing)}

    a = {"import_torch_s": 2.0, "zoo": {"vgg": family("vgg", 0.10, 0.16),
                                        "alexnet": family("alexnet", 0.12, 0.13)}}
    cached, parsing = bench_check._zoo_row(a)
    assert "no parse cache" not in cached.what and "specs/alexnet.arch" in cached.what
    assert cached.ratio == 0.12 and cached.holds is True
    assert "no parse cache" in parsing.what and "specs/vgg.arch" in parsing.what
    assert parsing.ratio == 0.16 and parsing.holds is False
