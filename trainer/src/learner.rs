//! One optimiser step of the reference's training loop — `pretrain.train_batch` around the ACT
//! wrapper's training forward and `ACTLossHead` — over the state it changes: the model, the two
//! optimisers, the EMA, and the batch slots with their carry.
//!
//! `hrm train` ([`crate::train`]) feeds it generated examples and its own exploration draws;
//! `hrm train --replay` ([`crate::replay`]) feeds it a golden trace's batches and draws.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};
use hrm_runtime::blob::TensorId;
use hrm_runtime::HaltRule;

use crate::loss;
use crate::model::{Carry, GradMode, Net};
use crate::optim::{self, AdamAtan2, SignSgdRows};
use crate::presets::Hyper;
use crate::tasks::Example;

type Result<T> = candle_core::Result<T>;

/// Where a step's new examples and exploration draws come from.
pub trait StepFeed {
    /// The example that slot `slot` takes because it halted at the previous step.
    fn example(&mut self, slot: usize) -> Result<Example>;
    /// The slot's `min_halt_steps`: 0, or with probability `prob` a draw from `2..=max`.
    fn min_halt_steps(&mut self, slot: usize, max: u32, prob: f32) -> u32;
}

/// The batch slots: the example each holds, its segment count and whether it halted.
#[derive(Debug, Clone)]
pub struct Slots {
    pub inputs: Vec<u32>,
    pub labels: Vec<i64>,
    pub ids: Vec<u32>,
    pub steps: Vec<u32>,
    pub halted: Vec<bool>,
}

/// What one step computed (the reference's names in the comments).
pub struct StepOutcome {
    /// Learning rates of this step (AdamATan2's and the sign-SGD's).
    pub lr: f64,
    pub puzzle_emb_lr: f64,
    /// `lm_loss + 0.5·(q_halt_loss + q_continue_loss)`, before the `1 / batch` scaling.
    pub loss: f64,
    pub lm_loss: f64,
    pub q_halt_loss: f64,
    /// HRM only.
    pub q_continue_loss: Option<f64>,
    /// `[B, seq_len, V]`.
    pub logits: Tensor,
    pub q_halt: Vec<f32>,
    pub q_continue: Vec<f32>,
    /// HRM only: `sigmoid` of the next segment's Q value.
    pub target_q_continue: Option<Vec<f32>>,
    /// The new carry's `halted` and `steps`.
    pub halted: Vec<bool>,
    pub steps: Vec<u32>,
    pub min_halt_steps: Vec<u32>,
    /// Gradients of the scaled loss, by variable.
    pub grads: GradStore,
    /// `ACTLossHead`'s metrics over the slots that halted and have labels: their count, the sum
    /// of their cell accuracies, how many are exact, how many have `q_halt ≥ 0` exactly when
    /// they are exact, and the sum of their segment counts.
    pub count: u32,
    pub accuracy: f64,
    pub exact: u32,
    pub q_halt_correct: u32,
    pub segments: u64,
}

/// The training state one step reads and writes.
pub struct Learner {
    pub net: Net,
    pub hyper: Hyper,
    /// Length of the cosine schedule; none: constant after the warm-up.
    pub schedule_steps: Option<u64>,
    pub adam: AdamAtan2,
    /// Names of the variables `adam` updates, in its order.
    pub adam_ids: Vec<TensorId>,
    pub sign: Option<SignSgdRows>,
    /// The reference averages the parameters, not the puzzle-embedding table (a buffer there).
    pub ema: Option<Vec<(TensorId, Tensor)>>,
    pub slots: Slots,
    pub carry: Carry,
    /// Steps taken.
    pub step: u64,
}

impl Learner {
    /// A fresh run: every slot halted (so the first step fills them all), zero moments, the
    /// average equal to the weights.
    pub fn new(net: Net, hyper: Hyper, schedule_steps: Option<u64>) -> Result<Learner> {
        let (mut adam_vars, mut adam_ids) = (Vec::new(), Vec::new());
        let mut sign = None;
        for (id, var) in net.vars() {
            if id == TensorId::PuzzleEmbedding {
                sign = Some(SignSgdRows { var: var.clone(), weight_decay: hyper.puzzle_emb_weight_decay });
            } else {
                adam_vars.push(var.clone());
                adam_ids.push(id);
            }
        }
        let adam = AdamAtan2::new(adam_vars, hyper.beta1, hyper.beta2, hyper.weight_decay)?;
        let ema = match hyper.ema {
            Some(_) => Some(
                net.vars()
                    .filter(|(id, _)| *id != TensorId::PuzzleEmbedding)
                    .map(|(id, v)| Ok((id, v.as_tensor().copy()?)))
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let b = hyper.batch_size;
        let seq = net.config.seq_len as usize;
        let slots = Slots {
            inputs: vec![0; b * seq],
            labels: vec![0; b * seq],
            ids: vec![0; b],
            steps: vec![0; b],
            halted: vec![true; b],
        };
        let carry = net.initial_carry(b)?;
        Ok(Learner { net, hyper, schedule_steps, adam, adam_ids, sign, ema, slots, carry, step: 0 })
    }

    /// The learning rates of step `step` (1 for the first: the reference increments its step
    /// counter before computing the rate).
    pub fn learning_rates(&self, step: u64) -> (f64, f64) {
        let h = &self.hyper;
        let total = self.schedule_steps.unwrap_or(u64::MAX);
        let min_ratio = if self.schedule_steps.is_some() { h.lr_min_ratio } else { 1.0 };
        let scale = optim::learning_rate(step, 1.0, h.lr_warmup_steps, total, min_ratio);
        (h.lr * scale, h.puzzle_emb_lr * scale)
    }

    /// One optimiser step over one segment of every slot.
    pub fn train_batch(&mut self, feed: &mut dyn StepFeed) -> Result<StepOutcome> {
        let c = self.net.config;
        let b = self.hyper.batch_size;
        let seq = c.seq_len as usize;
        let dev = self.net.device.clone();

        // Halted slots take fresh examples and restart from the initial carry.
        let reset: Vec<u8> = self.slots.halted.iter().map(|&h| u8::from(h)).collect();
        for i in 0..b {
            if self.slots.halted[i] {
                let e = feed.example(i)?;
                if e.inputs.len() != seq || e.labels.len() != seq {
                    candle_core::bail!("an example of {} tokens for a model of {seq}", e.inputs.len());
                }
                self.slots.inputs[i * seq..(i + 1) * seq].copy_from_slice(&e.inputs);
                self.slots.labels[i * seq..(i + 1) * seq].copy_from_slice(&e.labels);
                self.slots.ids[i] = e.puzzle_id;
                self.slots.steps[i] = 0;
            }
        }
        let carry = self.net.reset_carry(&self.carry, &Tensor::from_vec(reset, b, &dev)?)?;
        let inputs = Tensor::from_slice(&self.slots.inputs, (b, seq), &dev)?;
        let labels = Tensor::from_slice(&self.slots.labels, (b, seq), &dev)?;
        let ids = Tensor::from_slice(&self.slots.ids, b, &dev)?;

        let x = self.net.embed(&inputs, &ids, true)?;
        let out = self.net.segment(&carry, &x, GradMode::OneStep)?;
        let q_halt = out.q_halt.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let q_continue = out.q_continue.to_dtype(DType::F32)?.to_vec1::<f32>()?;

        // Halting, with exploration: a minimum number of segments drawn now and then.
        let max = c.halt_max_steps;
        let mut is_last = vec![false; b];
        let mut halted = vec![false; b];
        let mut min_halt_steps = vec![0; b];
        for i in 0..b {
            self.slots.steps[i] += 1;
            is_last[i] = self.slots.steps[i] >= max;
            let mut h = is_last[i];
            if max > 1 {
                h |= match c.halt_rule {
                    HaltRule::HaltOverContinue => q_halt[i] > q_continue[i],
                    HaltRule::HaltPositive => q_halt[i] > 0.0,
                };
                min_halt_steps[i] = feed.min_halt_steps(i, max, c.halt_exploration_prob);
                h &= self.slots.steps[i] >= min_halt_steps[i];
            }
            halted[i] = h;
        }

        let scored = loss::score(&out.logits, &labels)?;
        let lm = loss::lm_loss(&out.logits, &labels, self.hyper.loss, &scored.counts)?;
        let seq_correct = scored.seq_correct.to_dtype(out.q_halt.dtype())?;
        let q_halt_loss = loss::bce_with_logits_sum(&out.q_halt, &seq_correct)?;
        let mut q_loss = q_halt_loss.clone();
        let (mut target_q_continue, mut q_continue_loss) = (None, None);
        if c.halt_rule == HaltRule::HaltOverContinue {
            // HRM's target of q_continue: the next segment's value, from one more segment
            // without gradient from the new carry.
            let next = self.net.segment(
                &Carry { z_h: out.carry.z_h.detach(), z_l: out.carry.z_l.detach() },
                &x.detach(),
                GradMode::None,
            )?;
            let nh = next.q_halt.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let nc = next.q_continue.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let target: Vec<f32> = (0..b)
                .map(|i| {
                    let v = if is_last[i] { nh[i] } else { nh[i].max(nc[i]) };
                    1.0 / (1.0 + (-v).exp())
                })
                .collect();
            let target_t = Tensor::from_slice(&target, b, &dev)?.to_dtype(out.q_continue.dtype())?;
            let continue_loss = loss::bce_with_logits_sum(&out.q_continue, &target_t)?;
            q_loss = (q_loss + &continue_loss)?;
            q_continue_loss = Some(continue_loss.to_dtype(DType::F64)?.to_scalar::<f64>()?);
            target_q_continue = Some(target);
        }
        let total = ((lm.to_dtype(q_loss.dtype())? + (&q_loss * 0.5)?)? / b as f64)?;
        let grads = total.backward()?;
        self.step += 1;
        let (lr, puzzle_emb_lr) = self.learning_rates(self.step);
        // The reference's order: the sign-SGD, then AdamATan2, then the average.
        if let Some(sign) = &self.sign {
            let mut used = vec![0f32; c.num_puzzle_identifiers as usize];
            for &id in &self.slots.ids {
                if let Some(u) = used.get_mut(id as usize) {
                    *u = 1.0;
                }
            }
            let used = Tensor::from_vec(used, (c.num_puzzle_identifiers as usize, 1), &dev)?;
            sign.step(&grads, &used, puzzle_emb_lr)?;
        }
        self.adam.step(&grads, lr)?;
        if let (Some(ema), Some(rate)) = (&mut self.ema, self.hyper.ema) {
            let t = (self.step - 1) as f64;
            let rate = if self.hyper.ema_warmup { rate.min((1.0 + t) / (10.0 + t)) } else { rate };
            for (id, avg) in ema.iter_mut() {
                let p = self.net.var(*id)?.as_tensor();
                // Detached: the sum's graph would keep the previous average alive, and with
                // it every earlier one (a parameter-sized leak per step, 24 GB by step 8,500).
                *avg = ((&*avg * rate)? + (p * (1.0 - rate))?)?.detach();
            }
        }
        self.carry = Carry { z_h: out.carry.z_h.detach(), z_l: out.carry.z_l.detach() };

        // Metrics over the sequences that halted and have labels.
        let counts = scored.counts.to_vec1::<f32>()?;
        let correct = scored.correct.to_vec1::<f32>()?;
        let (mut count, mut accuracy, mut exact, mut q_halt_correct, mut segments) = (0, 0.0, 0, 0, 0);
        for i in 0..b {
            if halted[i] && counts[i] > 0.0 {
                let is_exact = correct[i] == counts[i];
                count += 1;
                accuracy += f64::from(correct[i] / counts[i]);
                exact += u32::from(is_exact);
                q_halt_correct += u32::from((q_halt[i] >= 0.0) == is_exact);
                segments += u64::from(self.slots.steps[i]);
            }
        }
        let lm_loss = lm.to_scalar::<f64>()?;
        let q_halt_loss = q_halt_loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let loss = lm_loss + 0.5 * (q_halt_loss + q_continue_loss.unwrap_or(0.0));
        self.slots.halted = halted.clone();
        Ok(StepOutcome {
            lr,
            puzzle_emb_lr,
            loss,
            lm_loss,
            q_halt_loss,
            q_continue_loss,
            logits: out.logits,
            q_halt,
            q_continue,
            target_q_continue,
            halted,
            steps: self.slots.steps.clone(),
            min_halt_steps,
            grads,
            count,
            accuracy,
            exact,
            q_halt_correct,
            segments,
        })
    }

    /// A model with the weights to evaluate and save: the average where there is one (TRM),
    /// else the current weights.
    pub fn eval_net(&self) -> Result<Net> {
        let ck = self.net.to_checkpoint()?;
        let net = Net::from_checkpoint(&ck, &self.net.device)?;
        if let Some(ema) = &self.ema {
            for (id, avg) in ema {
                net.var(*id)?.set(avg)?;
            }
        }
        Ok(net)
    }
}
