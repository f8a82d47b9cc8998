from os import PathLike
from typing import Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

class HrmError(ValueError): ...

class Model:
    def __init__(self, blob: bytes) -> None: ...
    @staticmethod
    def load(path: Union[str, PathLike]) -> "Model": ...
    @property
    def config(self) -> dict: ...
    def infer(
        self,
        inputs: npt.ArrayLike,
        puzzle_identifiers: Optional[npt.ArrayLike] = None,
        segments: Optional[int] = None,
        adaptive: bool = False,
        latents: bool = False,
        threads: Optional[int] = None,
    ) -> dict[str, np.ndarray]: ...
    def solve_sudoku(self, puzzles: Sequence[str], ensemble: int = 1, threads: Optional[int] = None) -> list[str]: ...

def convert(
    src: Union[str, PathLike],
    out: Union[str, PathLike],
    weights: str = "f32",
    activations: str = "f32",
    calibrate: Optional[npt.ArrayLike] = None,
    block: Optional[int] = None,
    config: Optional[Union[str, PathLike]] = None,
    dataset: Optional[Union[str, PathLike]] = None,
    layout: str = "rows",
) -> int: ...
