"""The Python package against the reference and against the `hrm` command.

- Golden parity: each case of ../shared/golden (or, without it, the repository's fixtures in
  tests/fixtures/golden) is converted with `hrm.convert` from the official checkpoint and run
  with `Model.infer`; every segment's logits and Q values must match the PyTorch reference's
  within golden/README.md's tolerances.
- Sudoku: the built-in model's answers must be those `hrm solve sudoku` gave (recorded in
  sudoku-answers.csv with the command that made them).
- Errors: what the runtime refuses raises hrm.HrmError with its message.
"""

import os
import pathlib
import tempfile
import threading

import numpy as np
import pytest
from safetensors.numpy import load_file

import hrm

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "golden"
FIXTURES = REPO / "tests" / "fixtures" / "golden"
BLOB = REPO / "models" / "sudoku" / "sudoku.blob"
HERE = pathlib.Path(__file__).resolve().parent


def golden_cases():
    if SHARED.is_dir():
        root = SHARED
    else:
        if os.environ.get("CI"):
            raise RuntimeError(f"{SHARED} is missing and CI is set")
        print(f"\n*** {SHARED} is missing: golden parity runs on the repository's fixtures only ***")
        root = FIXTURES
    return sorted(p for p in root.iterdir() if (p / "expected.safetensors").is_file())


def tolerance(kind, segment):
    # golden/README.md: HRM 1e-4; TRM 1e-4, 1e-3, 5e-3 at segments 0, 1, 2 (and 5e-3 beyond).
    if kind == "hrm" or segment == 0:
        return 1e-4
    return 1e-3 if segment == 1 else 5e-3


def relative_error(a, b):
    diff = float(np.max(np.abs(a - b)))
    scale = float(np.max(np.abs(b)))
    return diff / scale if scale > 0 else diff


@pytest.mark.parametrize("case", golden_cases(), ids=lambda p: p.name)
def test_golden_parity(case, tmp_path):
    blob = tmp_path / "model.blob"
    size = hrm.convert(case / "checkpoint", blob)
    assert size == blob.stat().st_size
    model = hrm.Model.load(blob)
    expected = load_file(str(case / "expected.safetensors"))
    out = model.infer(expected["inputs"], expected["puzzle_identifiers"])
    kind = model.config["kind"]
    segments = model.config["halt_max_steps"]
    assert out["segments"].tolist() == [segments] * len(expected["inputs"])
    for s in range(segments):
        for name in ("logits", "q_halt", "q_continue"):
            key = f"segment{s}.{name}"
            assert out[key].shape == expected[key].shape, key
            err = relative_error(out[key], expected[key])
            assert err <= tolerance(kind, s), f"{case.name} {key}: relative error {err:.2e}"
    last = out[f"segment{segments - 1}.logits"]
    assert np.array_equal(out["predictions"], last.argmax(axis=-1))
    # The panel layout: another blob, the same outputs bit for bit (x86-64 and aarch64 tiles).
    panels = tmp_path / "panels.blob"
    hrm.convert(case / "checkpoint", panels, layout="panels")
    assert panels.read_bytes() != blob.read_bytes()
    again = hrm.Model.load(panels).infer(expected["inputs"], expected["puzzle_identifiers"])
    for key in out:
        assert np.array_equal(out[key], again[key]), key


def test_latents_and_segment_options():
    case = golden_cases()[0]
    model = converted(case)
    expected = load_file(str(case / "expected.safetensors"))
    out = model.infer(expected["inputs"].tolist(), segments=1, latents=True)
    assert sorted(k for k in out if k.startswith("segment0.")) == [
        "segment0.logits",
        "segment0.q_continue",
        "segment0.q_halt",
        "segment0.z_H",
        "segment0.z_L",
    ]
    assert "segment1.logits" not in out
    assert out["segment0.z_H"].shape[0] == len(expected["inputs"])


_converted = {}


def converted(case):
    if case not in _converted:
        path = pathlib.Path(tempfile.mkdtemp()) / "model.blob"
        hrm.convert(case / "checkpoint", path)
        _converted[case] = hrm.Model.load(path)
    return _converted[case]


def recorded_answers():
    """(puzzles, plain answers, ensemble-8 answers) from sudoku-answers.csv."""
    rows = [
        line.split(",")
        for line in (HERE / "sudoku-answers.csv").read_text().splitlines()
        if line and not line.startswith("#") and not line.startswith("puzzle")
    ]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def test_solve_sudoku_gives_the_answers_of_hrm_solve():
    model = hrm.Model.load(BLOB)
    puzzles, plain, ensemble = recorded_answers()
    assert model.solve_sudoku(puzzles) == plain
    assert model.solve_sudoku(puzzles, ensemble=8) == ensemble
    # The same from the blob's bytes, on one thread.
    assert hrm.Model(BLOB.read_bytes()).solve_sudoku(puzzles[:2], threads=1) == plain[:2]


def test_threads_share_one_model():
    model = hrm.Model.load(BLOB)
    puzzles, plain, _ = recorded_answers()
    results = [None] * 4

    def work(i):
        results[i] = model.solve_sudoku(puzzles, threads=1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [plain] * 4


def test_errors_carry_the_runtimes_message(tmp_path):
    with pytest.raises(hrm.HrmError, match="bad magic"):
        hrm.Model(b"HRMX" + bytes(200))
    with pytest.raises(hrm.HrmError, match="truncated"):
        hrm.Model(BLOB.read_bytes()[:1000])
    with pytest.raises(hrm.HrmError, match="cannot read"):
        hrm.Model.load(tmp_path / "missing.blob")
    model = hrm.Model.load(BLOB)
    with pytest.raises(hrm.HrmError, match="puzzle 1: .*81"):
        model.solve_sudoku(["." * 81, "123"])
    with pytest.raises(hrm.HrmError, match="appears twice"):
        model.solve_sudoku(["11" + "." * 79])
    with pytest.raises(hrm.HrmError, match="seq_len = 81"):
        model.infer(np.ones((2, 80), dtype=np.int32))
    with pytest.raises(hrm.HrmError, match="token"):
        model.infer(np.full((1, 81), 11))
    with pytest.raises(hrm.HrmError, match="weights must be"):
        hrm.convert(FIXTURES / "hrm-sudoku-tiny" / "checkpoint", tmp_path / "x.blob", weights="int3")
    with pytest.raises(hrm.HrmError, match="layout must be"):
        hrm.convert(FIXTURES / "hrm-sudoku-tiny" / "checkpoint", tmp_path / "x.blob", layout="columns")
    with pytest.raises(hrm.HrmError, match="is for weights"):
        hrm.convert(FIXTURES / "hrm-sudoku-tiny" / "checkpoint", tmp_path / "x.blob", weights="int8", layout="panels")
    with pytest.raises(hrm.HrmError, match="cannot convert"):
        hrm.convert(tmp_path / "nothing", tmp_path / "x.blob")
    assert isinstance(hrm.HrmError("x"), ValueError)


def test_config_describes_the_model():
    config = hrm.Model.load(BLOB).config
    assert config["kind"] == "trm"
    assert (config["seq_len"], config["vocab_size"]) == (81, 11)
    assert config["blob_bytes"] == BLOB.stat().st_size
