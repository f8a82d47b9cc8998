"""HRM and TRM inference on the CPU, without PyTorch.

    import hrm
    model = hrm.Model.load("models/sudoku/sudoku.blob")
    model.solve_sudoku(["5...3962..1.......9....2457.27...13...89.....3.127..45..9...5...3.6.7.8...5...213"])
    out = model.infer(inputs, puzzle_identifiers)      # numpy in, a dict of numpy arrays out
    out["segment0.logits"].shape                       # (B, seq_len, vocab_size)
    hrm.convert("checkpoint", "model.blob", weights="int8")

The computation is the Rust runtime's (the `hrm` command's), with the GIL released while it
runs; what it refuses raises `hrm.HrmError`, a `ValueError`.
"""

from ._hrm import HrmError, Model, __version__, convert

__all__ = ["HrmError", "Model", "convert", "__version__"]
