//! The trainer's candle forward pass against the reference outputs of every golden case, and
//! the one-step gradient against finite differences.

use candle_core::{DType, Device, Tensor};
use hrm_convert::{Checkpoint, Overrides};
use hrm_tests::{golden_cases, read_safetensors, relative_error, tolerance};
use hrm_trainer::model::{Carry, GradMode, Net};

#[test]
fn candle_forward_matches_every_golden_case() {
    let dev = Device::Cpu;
    for case in golden_cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let weights = if case.join("checkpoint").is_file() { "checkpoint" } else { "weights.safetensors" };
        let ck = Checkpoint::load(&case.join(weights), &Overrides::default()).unwrap();
        let net = Net::from_checkpoint(&ck, &dev).unwrap();
        let exp = read_safetensors(&case.join("expected.safetensors"));
        let b = exp["puzzle_identifiers"].shape[0];
        let seq = net.config.seq_len as usize;
        let inputs: Vec<u32> = exp["inputs"].i64.iter().map(|&t| t as u32).collect();
        let ids: Vec<u32> = exp["puzzle_identifiers"].i64.iter().map(|&t| t as u32).collect();
        let inputs = Tensor::from_vec(inputs, (b, seq), &dev).unwrap();
        let ids = Tensor::from_vec(ids, b, &dev).unwrap();
        let x = net.embed(&inputs, &ids, false).unwrap();
        let mut carry = net.initial_carry(b).unwrap();
        for s in 0..net.config.halt_max_steps as usize {
            let out = net.segment(&carry, &x, GradMode::None).unwrap();
            let tol = tolerance(net.config.kind, s);
            for (key, t) in [("logits", &out.logits), ("q_halt", &out.q_halt), ("q_continue", &out.q_continue)] {
                let got = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let err = relative_error(&got, &exp[&format!("segment{s}.{key}")].f32);
                assert!(err <= tol, "{name}: segment{s}.{key} off by {err:.2e} > {tol:.0e}");
            }
            if s == 0 {
                let zh = out.carry.z_h.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(relative_error(&zh, &exp["segment0.z_H"].f32) <= tol, "{name}: z_H");
            }
            carry = out.carry;
        }
    }
}

/// The gradient of the one-step approximation is the gradient of the last module calls with
/// the carry before them held constant; check it against central differences in f64.
#[test]
fn one_step_gradient_matches_finite_differences() {
    for kind in [hrm_runtime::ModelKind::Hrm, hrm_runtime::ModelKind::Trm] {
        let dev = Device::Cpu;
        let mut config = hrm_tests::tiny_sudoku_config();
        config.hidden_size = 8;
        config.puzzle_emb_ndim = 8;
        config.mlp_inter = 16;
        config.seq_len = 5;
        config.vocab_size = 4;
        if kind == hrm_runtime::ModelKind::Trm {
            config.kind = kind;
            config.h_layers = 0;
            config.halt_rule = hrm_runtime::HaltRule::HaltPositive;
        }
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
        let net32 = Net::init(config, &mut rng, &dev).unwrap();
        // Make the Q head and puzzle embedding non-zero so that they carry gradient.
        let ck = {
            let mut ck = net32.to_checkpoint().unwrap();
            let tensors = hrm_tests::synthetic_tensors(&config, 21);
            ck = Checkpoint::from_tensors(config, tensors).unwrap_or(ck);
            ck
        };
        // Work in f64 for clean differences.
        let net = Net::from_checkpoint(&ck, &dev).unwrap().to_dtype(DType::F64).unwrap();
        let inputs = Tensor::new(&[[1u32, 2, 3, 0, 1]], &dev).unwrap();
        let ids = Tensor::new(&[0u32], &dev).unwrap();
        let loss_of = |net: &Net| -> (Tensor, Carry) {
            let x = net.embed(&inputs, &ids, true).unwrap();
            let c0 = net.initial_carry(1).unwrap();
            let out = net.segment(&c0, &x, GradMode::OneStep).unwrap();
            let w = Tensor::arange(0f64, (5 * 4) as f64, &dev).unwrap().reshape((1, 5, 4)).unwrap();
            let l = ((out.logits * (w * 0.01).unwrap()).unwrap().sum_all().unwrap()
                + (out.q_halt.sum_all().unwrap() * 0.3).unwrap())
            .unwrap();
            (l, out.carry)
        };
        let (loss, _) = loss_of(&net);
        let grads = loss.backward().unwrap();

        // The carry entering the gradient region, at the base weights: a constant for f.
        let frozen = {
            let x = net.embed(&inputs, &ids, false).unwrap();
            let c0 = net.initial_carry(1).unwrap();
            net.run_calls(&c0, &x, 0..net.one_step_start(), false).unwrap()
        };
        let mut checked = 0;
        for (id, var) in net.vars() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let base = var.as_tensor().copy().unwrap();
            let flat = base.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for i in (0..flat.len()).step_by((flat.len() / 3).max(1)).take(3) {
                let eps = 1e-6;
                let value_at = |delta: f64| {
                    let mut v = flat.clone();
                    v[i] += delta;
                    var.set(&Tensor::from_vec(v, base.shape(), &dev).unwrap()).unwrap();
                    let f = objective(&net, &frozen, &inputs, &ids, &dev);
                    var.set(&base).unwrap();
                    f
                };
                let numeric = (value_at(eps) - value_at(-eps)) / (2.0 * eps);
                let err = (numeric - g[i]).abs() / (1e-6 + numeric.abs().max(g[i].abs()));
                assert!(err < 1e-5, "{kind:?} {id} [{i}]: autograd {} vs finite difference {numeric}", g[i]);
                checked += 1;
            }
        }
        assert!(checked > 20, "only {checked} gradients checked");
    }
}

/// The loss as a function of the weights with the carry before the gradient region held at
/// `frozen`: what the one-step gradient is the exact gradient of.
fn objective(net: &Net, frozen: &Carry, inputs: &Tensor, ids: &Tensor, dev: &Device) -> f64 {
    let x = net.embed(inputs, ids, false).unwrap();
    let total = net.calls_per_segment();
    let c = net.run_calls(frozen, &x, net.one_step_start()..total, false).unwrap();
    let (logits, q_halt, _) = net.heads(&c.z_h, false).unwrap();
    let w = Tensor::arange(0f64, 20.0, dev).unwrap().reshape((1, 5, 4)).unwrap();
    ((logits * (w * 0.01).unwrap()).unwrap().sum_all().unwrap() + (q_halt.sum_all().unwrap() * 0.3).unwrap())
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}
