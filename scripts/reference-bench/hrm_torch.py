"""HRM inference (one ACT segment at a time) in plain PyTorch, written from the project's model
specification, not taken from the reference repository. It reads the reference training's
checkpoint folders (`checkpoint` or `step_N`, or a weights `.safetensors`, with
`all_config.yaml` and `dataset.json`).

    python hrm_torch.py check DIR [DIR ...]

compares every segment's logits and Q values with DIR/expected.safetensors (outputs of the
official code) and exits non-zero unless all are within 1e-4 of max |expected|.
"""

import json
import math
import re
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

PREFIX = "_orig_mod.model.inner."


def swiglu_inter(expansion, hidden):
    # Python's round is half-to-even, as in the reference; then up to a multiple of 256.
    n = round(expansion * hidden * 2 / 3)
    return (n + 255) // 256 * 256


def read_config(folder):
    folder = Path(folder)
    arch = yaml.safe_load((folder / "all_config.yaml").read_text())["arch"]
    data = json.loads((folder / "dataset.json").read_text())
    if not arch["name"].startswith("hrm."):
        raise SystemExit(f"{folder}: only HRM is implemented here, not {arch['name']}")
    h = arch["hidden_size"]
    ndim = arch.get("puzzle_emb_ndim", 0)
    return dict(
        hidden=h,
        heads=arch["num_heads"],
        h_layers=arch["H_layers"],
        l_layers=arch["L_layers"],
        h_cycles=arch["H_cycles"],
        l_cycles=arch["L_cycles"],
        expansion=arch["expansion"],
        pos=arch["pos_encodings"],
        puzzle_emb_ndim=ndim,
        prefix=-(-ndim // h),  # P = ceil(ndim / h)
        halt_max_steps=arch["halt_max_steps"],
        rope_theta=arch.get("rope_theta", 10000.0),
        eps=arch.get("rms_norm_eps", 1e-5),
        seq_len=data["seq_len"],
        vocab=data["vocab_size"],
        num_puzzle_ids=data["num_puzzle_identifiers"],
    )


def read_weights(folder):
    """`checkpoint`, else the newest `step_N` (torch.save of the state dict), else the one
    weights `.safetensors` file; the reference's key prefix removed."""
    folder = Path(folder)
    steps = sorted(folder.glob("step_*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    saved = [folder / "checkpoint"] if (folder / "checkpoint").exists() else steps[-1:]
    if saved:
        state = torch.load(saved[0], map_location="cpu", weights_only=True)
    else:
        files = [f for f in folder.glob("*.safetensors") if not f.name.startswith("expected")]
        if len(files) != 1:
            raise SystemExit(f"{folder}: no checkpoint, step_N or single weights .safetensors file")
        from safetensors.torch import load_file

        state = load_file(str(files[0]))
    return {k.removeprefix(PREFIX): v for k, v in state.items()}


def rms_norm(x, eps):
    return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)


class HRM(torch.nn.Module):
    """The weights as a flat dict of float32 tensors named as in the checkpoint (prefix removed)."""

    def __init__(self, cfg, weights):
        super().__init__()
        self.cfg = cfg
        for name, t in weights.items():
            self.register_buffer(name.replace(".", "__"), t.float().contiguous())
        h, heads = cfg["hidden"], cfg["heads"]
        hd = h // heads
        positions = cfg["seq_len"] + cfg["prefix"]
        # RoPE: angles of halves, repeated twice (rotate_half pairs i with i + hd/2).
        inv_freq = 1.0 / cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
        angle = torch.outer(torch.arange(positions, dtype=torch.float32), inv_freq)
        angle = torch.cat([angle, angle], dim=-1)
        self.register_buffer("rope_cos", angle.cos())
        self.register_buffer("rope_sin", angle.sin())

    def w(self, name):
        return getattr(self, name.replace(".", "__"))

    def embed(self, tokens, puzzle_ids):
        c = self.cfg
        x = F.embedding(tokens, self.w("embed_tokens.embedding_weight"))
        if c["puzzle_emb_ndim"] > 0:
            p = F.embedding(puzzle_ids, self.w("puzzle_emb.weights"))
            p = F.pad(p, (0, c["prefix"] * c["hidden"] - c["puzzle_emb_ndim"]))
            x = torch.cat([p.view(-1, c["prefix"], c["hidden"]), x], dim=1)
        if c["pos"] == "learned":
            x = 0.707106781 * (x + self.w("embed_pos.embedding_weight"))
        return math.sqrt(c["hidden"]) * x

    def rope(self, v):  # v [B, S, heads, hd]
        cos, sin = self.rope_cos[:, None, :], self.rope_sin[:, None, :]
        v1, v2 = v.chunk(2, dim=-1)
        return v * cos + torch.cat([-v2, v1], dim=-1) * sin

    def attention(self, x, p):
        b, s, h = x.shape
        heads = self.cfg["heads"]
        qkv = F.linear(x, self.w(p + "self_attn.qkv_proj.weight")).view(b, s, 3 * heads, h // heads)
        q, k, v = qkv[:, :, :heads], qkv[:, :, heads : 2 * heads], qkv[:, :, 2 * heads :]
        if self.cfg["pos"] == "rope":
            q, k = self.rope(q), self.rope(k)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return F.linear(out.transpose(1, 2).reshape(b, s, h), self.w(p + "self_attn.o_proj.weight"))

    def swiglu(self, x, p):
        gate, up = F.linear(x, self.w(p + "mlp.gate_up_proj.weight")).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.w(p + "mlp.down_proj.weight"))

    def module(self, level, layers, z, injection):
        # Post-norm blocks after the input injection.
        eps = self.cfg["eps"]
        z = z + injection
        for i in range(layers):
            p = f"{level}_level.layers.{i}."
            z = rms_norm(z + self.attention(z, p), eps)
            z = rms_norm(z + self.swiglu(z, p), eps)
        return z

    def initial_carry(self, batch):
        c = self.cfg
        shape = (batch, c["seq_len"] + c["prefix"], c["hidden"])
        return self.w("H_init").expand(shape).contiguous(), self.w("L_init").expand(shape).contiguous()

    def forward(self, tokens, puzzle_ids, z_h, z_l):
        """One ACT segment: (new z_H, new z_L, logits [B, seq_len, V], q_halt [B], q_continue [B])."""
        c = self.cfg
        x = self.embed(tokens, puzzle_ids)
        for _ in range(c["h_cycles"]):
            for _ in range(c["l_cycles"]):
                z_l = self.module("L", c["l_layers"], z_l, z_h + x)
            z_h = self.module("H", c["h_layers"], z_h, z_l)
        logits = F.linear(z_h, self.w("lm_head.weight"))[:, c["prefix"] :]
        q = F.linear(z_h[:, 0], self.w("q_head.weight"), self.w("q_head.bias"))
        return z_h, z_l, logits, q[:, 0], q[:, 1]


def load(folder):
    return HRM(read_config(folder), read_weights(folder)).eval()


def check(folder, tolerance=1e-4):
    from safetensors.torch import load_file

    model = load(folder)
    expected = load_file(str(Path(folder) / "expected.safetensors"))
    tokens = expected["inputs"].long()
    ids = expected["puzzle_identifiers"].long()
    z_h, z_l = model.initial_carry(tokens.shape[0])
    worst = 0.0
    with torch.inference_mode():
        for s in range(model.cfg["halt_max_steps"]):
            z_h, z_l, logits, q_halt, q_cont = model(tokens, ids, z_h, z_l)
            got = {"logits": logits, "q_halt": q_halt, "q_continue": q_cont}
            if s == 0:
                got.update(z_H=z_h, z_L=z_l)
            for name, value in got.items():
                ref = expected[f"segment{s}.{name}"]
                err = ((value - ref).abs().max() / ref.abs().max()).item()
                worst = max(worst, err)
                if err > tolerance:
                    print(f"{folder}: segment{s}.{name} differs by {err:.3g} (relative to max |expected|)")
    ok = worst <= tolerance
    print(f"{Path(folder).name}: {model.cfg['halt_max_steps']} segments, max error {worst:.2e} "
          f"(relative to max |expected|, tolerance {tolerance:g}): {'ok' if ok else 'FAILED'}")
    return ok


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "check":
        raise SystemExit(__doc__)
    torch.set_num_threads(1)  # deterministic summation order and no competition with other jobs
    results = [check(d) for d in sys.argv[2:]]
    sys.exit(0 if all(results) else 1)
