"""One ACT segment of the 27M HRM Sudoku architecture, batch 1, float32 (and int8 weights), timed
side by side in PyTorch, ONNX Runtime and this project's runtime (`hrm`), after checking that
all of them compute the same function. See README.md beside this file.

    python bench.py --hrm target/release/hrm --segment-time target/release/examples/segment_time --out results.md
"""

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# The official HRM Sudoku-Extreme architecture (sudoku_27m in tests/benches/speed.rs).
ARCH = dict(
    name="hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
    loss=dict(loss_type="stablemax_cross_entropy", name="losses@ACTLossHead"),
    halt_exploration_prob=0.1,
    halt_max_steps=16,
    H_cycles=2,
    L_cycles=2,
    H_layers=4,
    L_layers=4,
    hidden_size=512,
    num_heads=8,
    expansion=4,
    puzzle_emb_ndim=512,
    pos_encodings="rope",
)
DATASET = dict(pad_id=0, ignore_label_id=0, blank_identifier_id=0, total_groups=1, mean_puzzle_examples=1.0,
               sets=["all"], seq_len=81, vocab_size=11, num_puzzle_identifiers=1)
# The token pattern segment_time uses; any board costs the same.
TOKENS = [1 + i % 10 for i in range(81)]
INPUTS = ["tokens", "puzzle_identifiers", "z_H", "z_L"]
OUTPUTS = ["new_z_H", "new_z_L", "logits", "q_halt", "q_continue"]


def write_checkpoint(folder, seed):
    """Random weights with the reference's initialisation scales, in the reference's checkpoint
    format; unlike a fresh reference model, the Q head and puzzle embedding are non-zero."""
    import torch
    import yaml

    from hrm_torch import swiglu_inter

    g = torch.Generator().manual_seed(seed)
    h, v = ARCH["hidden_size"], DATASET["vocab_size"]
    inter = swiglu_inter(ARCH["expansion"], h)

    def trunc_normal(shape, std):
        # ±2σ truncation; 0.8796 is the std of a standard normal truncated there.
        t = torch.empty(shape)
        torch.nn.init.trunc_normal_(t, std=std / 0.87962566, a=-2 * std / 0.87962566, b=2 * std / 0.87962566, generator=g)
        return t

    def linear(out, inp):
        return trunc_normal((out, inp), 1 / inp**0.5)

    w = {
        "H_init": trunc_normal((h,), 1.0).bfloat16(),
        "L_init": trunc_normal((h,), 1.0).bfloat16(),
        "embed_tokens.embedding_weight": trunc_normal((v, h), 1 / h**0.5),
        "puzzle_emb.weights": trunc_normal((DATASET["num_puzzle_identifiers"], ARCH["puzzle_emb_ndim"]), 1 / h**0.5),
        "lm_head.weight": linear(v, h),
        "q_head.weight": linear(2, h),
        "q_head.bias": trunc_normal((2,), 0.5),
    }
    for level, layers in (("H", ARCH["H_layers"]), ("L", ARCH["L_layers"])):
        for i in range(layers):
            p = f"{level}_level.layers.{i}."
            w[p + "self_attn.qkv_proj.weight"] = linear(3 * h, h)
            w[p + "self_attn.o_proj.weight"] = linear(h, h)
            w[p + "mlp.gate_up_proj.weight"] = linear(2 * inter, h)
            w[p + "mlp.down_proj.weight"] = linear(h, inter)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"_orig_mod.model.inner." + k: t for k, t in w.items()}, folder / "checkpoint")
    (folder / "all_config.yaml").write_text(yaml.safe_dump(dict(arch=ARCH, seed=seed)))
    (folder / "dataset.json").write_text(json.dumps(DATASET))


def example_inputs(model):
    import torch

    tokens = torch.tensor([TOKENS], dtype=torch.int64)
    ids = torch.zeros(1, dtype=torch.int64)
    z_h, z_l = model.initial_carry(1)
    return tokens, ids, z_h, z_l


@contextlib.contextmanager
def quiet():
    """Exporter and quantiser chatter (progress lines, optional packages, advice) to /dev/null;
    errors still raise."""
    logging.disable(logging.WARNING)
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def export_onnx(model, path):
    import torch

    # torch.export-based exporter (the default since torch 2.9); one file, weights inside.
    with torch.inference_mode(), quiet():
        torch.onnx.export(model, example_inputs(model), str(path), input_names=INPUTS, output_names=OUTPUTS,
                          dynamo=True, external_data=False, verbose=False)


def quantise_onnx(src, dst):
    """ORT's dynamic int8 quantisation (int8 weights per tensor, activations quantised at run
    time). The pre-processing folds the exported graph's weight transposes into the
    initializers; without it the quantiser sees no constant weight and leaves the products f32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_suffix(".pre.onnx")
    with quiet():
        quant_pre_process(str(src), str(pre))
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8)
    pre.unlink()


def ort_session(path, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_feed(arrays):
    return dict(zip(INPUTS, arrays))


def max_diff(a, b):
    """max |a - b| and the same relative to max |b|."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = np.abs(a - b).max()
    return d, d / np.abs(b).max()


# ---------------------------------------------------------------------------------------------
# Timing workers: one process per configuration, all alive at once, each answering "run n
# segments" requests on stdin with the n times (ms) on stdout, so that the driver can interleave
# them round by round. Each segment starts from the carry the previous one produced.


def worker(engine, threads, path, warmup):
    if engine == "torch":
        import torch

        import hrm_torch

        torch.set_num_threads(threads)
        model = hrm_torch.load(path)
        carry = example_inputs(model)

        def segment():
            nonlocal carry
            with torch.inference_mode():
                z_h, z_l, *_ = model(*carry)
            carry = (carry[0], carry[1], z_h, z_l)
    else:
        session = ort_session(path, threads)
        tokens = np.array([TOKENS], dtype=np.int64)
        ids = np.zeros(1, dtype=np.int64)
        init = np.load(Path(path).parent / "carry.npz")
        carry = [init["z_H"], init["z_L"]]

        def segment():
            nonlocal carry
            # All outputs, as the other engines compute them all; the carry goes back in.
            carry = session.run(OUTPUTS, ort_feed([tokens, ids, *carry]))[:2]

    for _ in range(warmup):
        segment()
    print("ready", flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            t = time.perf_counter()
            segment()
            times.append((time.perf_counter() - t) * 1e3)
        print(" ".join(f"{t:.4f}" for t in times), flush=True)


class Worker:
    def __init__(self, label, command):
        self.label, self.times = label, []
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"{label}: the worker did not start")

    def run(self, n):
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        self.times += [float(t) for t in self.proc.stdout.readline().split()]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


# ---------------------------------------------------------------------------------------------


def cpu_line():
    info = Path("/proc/cpuinfo").read_text()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    have = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile") if f in flags]
    lacks = [f for f in ("avx2", "avx512f", "avx512_vnni") if f not in flags]
    return (f"{fields.get('model name', platform.processor())} (family {fields.get('cpu family', '?')} model "
            f"{fields.get('model', '?')}), {os.cpu_count()} cores; flags: {', '.join(have) or 'none of note'}"
            + (f"; no {', '.join(lacks)}" if lacks else ""))


def versions():
    import onnx
    import onnxruntime
    import torch

    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    return (f"Python {platform.python_version()}, torch {torch.__version__} (MKL: {torch.backends.mkl.is_available()}), "
            f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, numpy {np.__version__}, {rustc}, "
            f"hrm at {commit}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hrm", default=str(ROOT / "target/release/hrm"))
    ap.add_argument("--segment-time", default=str(ROOT / "target/release/examples/segment_time"))
    ap.add_argument("--work", default=str(ROOT / "target/reference-bench"), help="where the model files go")
    ap.add_argument("--out", help="write the markdown report here too")
    ap.add_argument("--reps", type=int, default=30, help="timed segments per configuration")
    ap.add_argument("--per-round", type=int, default=2, help="segments per configuration per round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seed", type=int, default=27)
    ap.add_argument("--worker", nargs=3, metavar=("ENGINE", "THREADS", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]), args.worker[2], args.warmup)

    import torch
    from safetensors.numpy import load_file, save_file

    import hrm_torch

    t0 = time.time()
    torch.set_num_threads(1)
    args.hrm, args.segment_time = (str(Path(p).resolve()) for p in (args.hrm, args.segment_time))
    work = Path(args.work).resolve()
    ckpt = work / "hrm-sudoku-27m"
    report = []

    def say(line=""):
        print(line, flush=True)
        report.append(line)

    # 1. The model: an official-format checkpoint folder, read by every side from the same file.
    write_checkpoint(ckpt, args.seed)
    model = hrm_torch.load(ckpt)
    blobs = {}
    for weights, flags in (("f32", ["--weights", "f32"]), ("f32 panels", ["--weights", "f32", "--layout", "panels"]),
                           ("int8", ["--weights", "int8"])):
        blobs[weights] = work / f"hrm-sudoku-27m-{weights.replace(' ', '-')}.blob"
        subprocess.run([args.hrm, "convert", str(ckpt), "--out", str(blobs[weights])] + flags,
                       check=True, stdout=subprocess.DEVNULL)

    # 2. PyTorch's first segment, the reference for every parity figure.
    inputs = example_inputs(model)
    with torch.inference_mode():
        ref = [t.numpy() for t in model(*inputs)]
    np.savez(work / "carry.npz", z_H=inputs[2].numpy(), z_L=inputs[3].numpy())  # for the ORT workers

    # 3. ONNX: the segment exported by torch.onnx.export, and an int8 dynamic-quantised copy.
    onnx_f32, onnx_int8 = work / "hrm-sudoku-27m.onnx", work / "hrm-sudoku-27m-int8.onnx"
    export_onnx(model, onnx_f32)
    quantise_onnx(onnx_f32, onnx_int8)

    parity = []
    feed = ort_feed([t.numpy() for t in inputs])
    for label, path in (("ONNX Runtime f32", onnx_f32), ("ONNX Runtime int8", onnx_int8)):
        got = ort_session(path, 1).run(OUTPUTS, feed)
        parity.append((label, [max_diff(g, r) for g, r in zip(got, ref)]))

    # 4. hrm's first segment on the same tokens, through `hrm infer`.
    save_file({"inputs": np.array([TOKENS], dtype=np.int32), "puzzle_identifiers": np.zeros(1, dtype=np.int32)},
              str(work / "inputs.safetensors"))
    for weights, blob in blobs.items():
        out = work / f"hrm-{weights.replace(' ', '-')}-segment0.safetensors"  # the carry too, with the golden files' names
        subprocess.run([args.hrm, "infer", str(blob), "--inputs", str(work / "inputs.safetensors"),
                        "--trace-out", str(out), "--segments", "1", "--threads", "1"], check=True)
        o = load_file(str(out))
        got = [o[f"segment0.{name}"] for name in ("z_H", "z_L", "logits", "q_halt", "q_continue")]
        parity.append((f"hrm {weights}", [max_diff(g, r) for g, r in zip(got, ref)]))

    # 5. Timing, all configurations alive at once and interleaved round by round, the order
    # rotated every round so that none always follows the same neighbour.
    threads = [int(t) for t in args.threads.split(",")]
    me = [sys.executable, str(Path(__file__).resolve()), "--warmup", str(args.warmup), "--worker"]
    configs = []
    for t in threads:
        configs += [
            (("PyTorch (eager)", "f32", t), me + ["torch", str(t), str(ckpt)]),
            (("ONNX Runtime", "f32", t), me + ["ort", str(t), str(onnx_f32)]),
            (("ONNX Runtime", "int8", t), me + ["ort", str(t), str(onnx_int8)]),
            (("hrm", "f32", t), [args.segment_time, str(blobs["f32"]), "--threads", str(t), "--serve",
                                 "--warmup", str(args.warmup)]),
            (("hrm", "f32 panels", t), [args.segment_time, str(blobs["f32 panels"]), "--threads", str(t), "--serve",
                                        "--warmup", str(args.warmup)]),
            (("hrm", "int8", t), [args.segment_time, str(blobs["int8"]), "--threads", str(t), "--serve",
                                  "--warmup", str(args.warmup)]),
        ]
    workers = [Worker(label, cmd) for label, cmd in configs]
    rounds = -(-args.reps // args.per_round)
    started = time.time()
    for r in range(rounds):
        for w in workers[r % len(workers):] + workers[: r % len(workers)]:
            time.sleep(0.05)  # let the previous engine's spinning threads go idle
            w.run(args.per_round)
    for w in workers:
        w.close()
    elapsed = time.time() - started

    # 6. The report.
    say("## One ACT segment of the 27M HRM Sudoku model, batch 1: PyTorch, ONNX Runtime, hrm")
    say()
    say(f"CPU: {cpu_line()}  ")
    say(f"Software: {versions()}  ")
    say(f"Model: h 512, 8 heads, H 4 / L 4 layers, cycles 2/2, seq 81 + 1 prefix, 27.3 M parameters, "
        f"random weights (seed {args.seed}), one official-format checkpoint read by all three.  ")
    say(f"Timing: {rounds * args.per_round} segments per row after {args.warmup} warm-up segments, "
        f"{args.per_round} per configuration per round, rounds interleaved ({elapsed:.0f} s); each segment "
        f"continues from the previous carry.")
    say()
    say("| engine | weights | threads | median ms | min ms | hrm's speed-up (median, same weights & threads) |")
    say("|---|---|---:|---:|---:|---:|")
    med = {w.label: statistics.median(w.times) for w in workers}
    for w in workers:
        engine, weights, t = w.label
        ours = med[("hrm", "f32 panels" if weights == "f32" else weights, t)]
        ratio = "" if engine == "hrm" else f"{med[w.label] / ours:.2f}×"
        say(f"| {engine} | {weights} | {t} | {med[w.label]:.1f} | {min(w.times):.1f} | {ratio} |")
    say()
    say("The speed-up of the other engines' f32 rows is against hrm's f32 panels (`hrm convert --layout panels`).")
    say()
    for layout in ("f32", "f32 panels"):
        goals = []
        for t in threads:
            ort_ratio = med[("ONNX Runtime", "f32", t)] / med[("hrm", layout, t)]
            torch_ratio = med[("PyTorch (eager)", "f32", t)] / med[("hrm", layout, t)]
            goals.append(f"{t} thread{'s' * (t > 1)}: {ort_ratio:.2f}× ONNX Runtime ({'met' if ort_ratio >= 1 else 'NOT met'}, "
                         f"needs ≥ 1), {torch_ratio:.2f}× PyTorch ({'met' if torch_ratio >= 1.6 else 'NOT met'}, needs ≥ 1.6)")
        say(f"hrm {layout} against the goal: " + "; ".join(goals) + ".")
        say()
    say("Parity of the first segment with PyTorch's (max |a − b|, and relative to max |PyTorch|):")
    say()
    say("| engine | " + " | ".join(OUTPUTS) + " |")
    say("|---|" + "---:|" * len(OUTPUTS))
    for label, diffs in parity:
        say(f"| {label} | " + " | ".join(f"{d:.1e} ({rel:.1e})" for d, rel in diffs) + " |")
    if args.out:
        Path(args.out).write_text("\n".join(report) + "\n")
    print(f"bench.py: {time.time() - t0:.0f} s in all")
    # f32 sides must agree to float32 rounding: 1e-4 of the tensor's scale (at least 1, since
    # a Q value near zero makes a relative figure meaningless).
    bad = [label for label, diffs in parity
           if "f32" in label and any(d > 1e-4 * max(d / rel if rel else 0, 1.0) for d, rel in diffs)]
    if bad:
        raise SystemExit(f"f32 outputs differ from PyTorch's by more than 1e-4 (relative): {', '.join(bad)}")


if __name__ == "__main__":
    main()
