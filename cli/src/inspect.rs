//! `hrm inspect`: everything the blob says about itself, and whether it is intact.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use hrm_runtime::blob::{self, Header, TensorEntry, TensorId, HEADER_LEN};
use hrm_runtime::{DType, Model};

pub fn run(path: &Path) -> Result<()> {
    let mut out = String::new();
    let result = describe(path, &mut out);
    crate::print(&out)?;
    result
}

fn describe(path: &Path, out: &mut String) -> Result<()> {
    let blob = crate::read_blob(path)?;
    let header = match Header::parse(&blob) {
        Ok(h) => h,
        Err(e) => bail!("{}: {e}", path.display()),
    };
    let c = &header.config;
    writeln!(out, "blob          {}", path.display())?;
    writeln!(out, "format        HRMB version {}", blob::FORMAT_VERSION)?;
    writeln!(out, "model         {:?}{}", c.kind, if c.mlp_t { " (mlp_t)" } else { "" })?;
    writeln!(out, "hidden_size   {}  heads {} (head_dim {})", c.hidden_size, c.num_heads, c.head_dim())?;
    writeln!(out, "layers        H {}  L {}", c.h_layers, c.l_layers)?;
    writeln!(out, "cycles        H {}  L {}", c.h_cycles, c.l_cycles)?;
    writeln!(
        out,
        "segments      halt_max_steps {}  halt rule {:?}  exploration {}",
        c.halt_max_steps, c.halt_rule, c.halt_exploration_prob
    )?;
    writeln!(
        out,
        "sequence      seq_len {} + prefix {} = {} positions, vocab {}",
        c.seq_len,
        c.puzzle_emb_len,
        c.positions(),
        c.vocab_size
    )?;
    writeln!(out, "puzzles       {} identifiers, embedding {} values", c.num_puzzle_identifiers, c.puzzle_emb_ndim)?;
    writeln!(out, "positions     {:?}  rope_theta {}", c.pos_encoding, c.rope_theta)?;
    writeln!(out, "swiglu        expansion {}  inter {}  mlp_t inter {}", c.expansion, c.mlp_inter, c.mlp_t_inter)?;
    writeln!(out, "rms_norm_eps  {:e}", c.rms_norm_eps)?;
    writeln!(out, "row block     {} (rows per weight pass; the arena grows with it)", c.block)?;
    writeln!(
        out,
        "activations   {}",
        match header.activations {
            hrm_runtime::Activations::F32 => "f32",
            hrm_runtime::Activations::Fixed => "fixed point (integer only; formats calibrated at conversion)",
        }
    )?;
    writeln!(
        out,
        "arena         {} bytes (header says {})",
        c.arena_bytes_for(header.activations),
        header.arena_bytes
    )?;
    writeln!(out, "blob length   {} bytes (file has {})", header.blob_len, blob.len())?;
    writeln!(out, "header CRC    ok")?;
    let payload_status = match usize::try_from(header.blob_len).ok().and_then(|end| blob.get(HEADER_LEN..end)) {
        Some(payload) => {
            let computed = blob::CRC32.checksum(payload);
            if computed == header.payload_crc {
                "ok".to_string()
            } else {
                format!("MISMATCH (stored {:#010x}, computed {computed:#010x})", header.payload_crc)
            }
        }
        None => "cannot check: file is truncated".to_string(),
    };
    writeln!(out, "payload CRC   {payload_status}")?;

    let model = Model::from_bytes(&blob);
    let count = match &model {
        Ok(m) => m.tensor_count(),
        Err(_) => header.tensor_count as usize,
    };
    writeln!(out, "tensors       {}", header.tensor_count)?;
    writeln!(out, "  {:>3}  {:<44} {:<5} {:>14} {:>10} {:>10}", "#", "name", "type", "shape", "offset", "bytes")?;
    let mut weight_bytes = [0u64; 6];
    for index in 0..count.min(4096) {
        let Ok(e) = TensorEntry::read(&blob, index) else { break };
        let name =
            TensorId::from_code(e.id).map_or_else(|| format!("<unknown id {:#010x}>", e.id), |id| id.to_string());
        let dtype = DType::from_code(e.dtype);
        if let Some(d) = dtype {
            weight_bytes[d.code() as usize] += e.len;
        }
        let shape: Vec<String> = e.shape.iter().take(e.rank as usize).map(u32::to_string).collect();
        writeln!(
            out,
            "  {index:>3}  {name:<44} {:<5} {:>14} {:>10} {:>10}",
            dtype.map_or("?", DType::name),
            format!("[{}]", shape.join(", ")),
            e.offset,
            e.len
        )?;
    }
    let by_type: Vec<String> = (0..6u8)
        .filter_map(|code| DType::from_code(code).map(|d| (d, weight_bytes[code as usize])))
        .filter(|&(_, bytes)| bytes > 0)
        .map(|(d, bytes)| format!("{d} {bytes} bytes"))
        .collect();
    writeln!(out, "data          {} (quantised types include their scales)", by_type.join(", "))?;
    match model {
        Ok(_) => {
            writeln!(out, "status        valid")?;
            Ok(())
        }
        Err(e) => bail!("{}: {e}", path.display()),
    }
}
