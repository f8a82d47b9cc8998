//! The reference's losses: per-token cross entropy (stablemax or softmax) averaged per sequence,
//! and the Q-halt / Q-continue binary cross entropies of ACT.

use candle_core::{DType, Result, Tensor, D};

/// Label value of positions that carry no loss.
pub const IGNORE_LABEL: i64 = -100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LmLoss {
    /// `s(x) = x + 1` for x ≥ 0, `1 / (1 − x)` for x < 0, normalised; the reference's default.
    Stablemax,
    Softmax,
}

/// `log p` of every class, in f64: stablemax is computed in f64 as the reference does, softmax
/// in the logits' own precision (the reference's `F.cross_entropy` on f32) and then widened.
fn log_probs(logits: &Tensor, kind: LmLoss) -> Result<Tensor> {
    match kind {
        LmLoss::Stablemax => {
            let x = logits.to_dtype(DType::F64)?;
            let neg = x.lt(0.0)?;
            let below = ((x.neg()? + 1.0)? + 1e-30)?.recip()?;
            let above = (&x + 1.0)?;
            let s = neg.where_cond(&below, &above)?;
            s.broadcast_div(&s.sum_keepdim(D::Minus1)?)?.log()
        }
        LmLoss::Softmax => {
            let max = logits.max_keepdim(D::Minus1)?.detach();
            let shifted = logits.broadcast_sub(&max)?;
            shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?.to_dtype(DType::F64)
        }
    }
}

/// Per-sequence statistics of a batch, computed without gradient.
#[derive(Debug, Clone)]
pub struct Scored {
    /// `[B]` f32: labelled tokens per sequence.
    pub counts: Tensor,
    /// `[B]` u8: every labelled token predicted correctly.
    pub seq_correct: Tensor,
    /// `[B]` f32: correctly predicted labelled tokens.
    pub correct: Tensor,
}

/// `labels` `[B, seq]` i64 with [`IGNORE_LABEL`] where there is no target.
pub fn score(logits: &Tensor, labels: &Tensor) -> Result<Scored> {
    let mask = labels.ne(IGNORE_LABEL)?;
    let pred = logits.detach().argmax(D::Minus1)?.to_dtype(DType::I64)?;
    let hit = (pred.eq(labels)?.to_dtype(DType::F32)? * mask.to_dtype(DType::F32)?)?;
    let counts = mask.to_dtype(DType::F32)?.sum(D::Minus1)?;
    let correct = hit.sum(D::Minus1)?;
    let seq_correct = correct.eq(&counts)?;
    Ok(Scored { counts, seq_correct, correct })
}

/// Σ over sequences of (Σ over labelled tokens of −log p(label)) / max(1, labelled tokens), in f64
/// (the reference adds it to the f32 Q losses in f64 too).
pub fn lm_loss(logits: &Tensor, labels: &Tensor, kind: LmLoss, counts: &Tensor) -> Result<Tensor> {
    let logp = log_probs(logits, kind)?;
    let mask = labels.ne(IGNORE_LABEL)?;
    let safe = mask.where_cond(labels, &labels.zeros_like()?)?;
    let picked = logp.gather(&safe.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1)?;
    let picked = (picked * mask.to_dtype(DType::F64)?)?;
    let per_seq = picked.sum(D::Minus1)?.neg()?;
    let divisor = counts.to_dtype(DType::F64)?.clamp(1.0, f64::INFINITY)?;
    (per_seq / divisor)?.sum_all()
}

/// Σ of binary cross entropy with logits: `max(x, 0) − x·y + log(1 + e^(−|x|))`.
pub fn bce_with_logits_sum(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let relu = logits.relu()?;
    let soft = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((relu - (logits * targets)?)? + soft)?.sum_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn losses_match_hand_computation() {
        let d = Device::Cpu;
        let logits = Tensor::new(&[[[2.0f32, -1.0, 0.0], [0.5, 0.5, -3.0]]], &d).unwrap();
        let labels = Tensor::new(&[[0i64, IGNORE_LABEL]], &d).unwrap();
        let s = score(&logits, &labels).unwrap();
        assert_eq!(s.counts.to_vec1::<f32>().unwrap(), [1.0]);
        assert_eq!(s.seq_correct.to_vec1::<u8>().unwrap(), [1]);
        // Stablemax of [2, -1, 0]: s = [3, 0.5, 1] → p(0) = 3 / 4.5.
        let l = lm_loss(&logits, &labels, LmLoss::Stablemax, &s.counts).unwrap().to_scalar::<f64>().unwrap();
        assert!((l - (-(3.0f64 / 4.5).ln())).abs() < 1e-12, "{l}");
        let soft = lm_loss(&logits, &labels, LmLoss::Softmax, &s.counts).unwrap().to_scalar::<f64>().unwrap();
        let want = -(2.0f64.exp() / (2.0f64.exp() + (-1.0f64).exp() + 1.0)).ln();
        assert!((soft - want).abs() < 1e-6);
        let x = Tensor::new(&[3.0f32, -2.0], &d).unwrap();
        let y = Tensor::new(&[1.0f32, 0.25], &d).unwrap();
        let b = bce_with_logits_sum(&x, &y).unwrap().to_scalar::<f32>().unwrap();
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        let want = -(sig(3.0).ln()) - (0.25 * sig(-2.0).ln() + 0.75 * (1.0 - sig(-2.0)).ln());
        assert!((b - want).abs() < 1e-5, "{b} vs {want}");
    }
}
