#!/usr/bin/env python3
"""Writes a tiny checkpoint in the layout torch.save uses (a zip with a pickled state dict and one
storage file per tensor), without PyTorch: a small, fast seed for the `pytorch` fuzz target.

    python3 scripts/tiny-torch-checkpoint.py tests/fixtures/fuzz/pytorch/tiny.pt
"""
import collections
import io
import pickle
import struct
import sys
import types
import zipfile


def stub_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class BFloat16Storage:
        pass

    def _rebuild_tensor_v2(*args):
        raise NotImplementedError

    for cls in (FloatStorage, BFloat16Storage):
        cls.__module__, cls.__qualname__ = "torch", cls.__name__
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch.FloatStorage, torch.BFloat16Storage, torch._utils = FloatStorage, BFloat16Storage, utils
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    return torch, utils


class Rebuild:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())."""

    def __init__(self, key, storage_cls, shape, numel):
        self.key, self.storage_cls, self.shape, self.numel = key, storage_cls, shape, numel

    def __reduce__(self):
        stride, acc = [], 1
        for d in reversed(self.shape):
            stride.insert(0, acc)
            acc *= d
        storage = StorageRef(self.storage_cls, self.key, self.numel)
        return (sys.modules["torch._utils"]._rebuild_tensor_v2,
                (storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))


class StorageRef:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def main(out):
    torch, _ = stub_torch()
    h, seq, vocab = 8, 6, 5
    prefix = "_orig_mod.model.inner."
    tensors = {  # an HRM with one H and one L layer, learned positions, no puzzle embedding
        "embed_tokens.embedding_weight": [vocab, h], "lm_head.weight": [vocab, h],
        "q_head.weight": [2, h], "q_head.bias": [2], "H_init": [h], "L_init": [h],
        "embed_pos.embedding_weight": [seq, h],
    }
    for level in ("H", "L"):
        tensors.update({
            f"{level}_level.layers.0.self_attn.qkv_proj.weight": [3 * h, h],
            f"{level}_level.layers.0.self_attn.o_proj.weight": [h, h],
            f"{level}_level.layers.0.mlp.gate_up_proj.weight": [512, h],
            f"{level}_level.layers.0.mlp.down_proj.weight": [h, 256],
        })
    state, files = collections.OrderedDict(), {}
    for i, (name, shape) in enumerate(tensors.items()):
        numel = 1
        for d in shape:
            numel *= d
        bf16 = name.endswith("_init")
        values = [((j * 7 + i) % 13 - 6) / 16 for j in range(numel)]
        if bf16:
            data = b"".join(struct.pack("<f", v)[2:] for v in values)
        else:
            data = struct.pack(f"<{numel}f", *values)
        files[str(i)] = data
        state[prefix + name] = Rebuild(str(i), torch.BFloat16Storage if bf16 else torch.FloatStorage, shape, numel)
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(state)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for key, data in files.items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")


if __name__ == "__main__":
    main(sys.argv[1])
